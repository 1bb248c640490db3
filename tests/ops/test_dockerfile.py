"""The Dockerfile, read as Docker would (no engine here to build it): a build stage that
compiles the native extension and proves it loads, a runtime stage without a compiler that
runs as a non-root user and exposes the Stratum and HTTP ports, and a .dockerignore that
keeps local build artifacts out of the context."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field

from ops.catalogue import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            parts = rest.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"name every stage: FROM {rest}"
            found.append(Stage(parts[0], parts[2]))
        elif found:
            found[-1].instructions.append((keyword, rest))
    return found


def test_multi_stage_build_compiles_and_checks_the_extension():
    build, runtime = stages(DOCKERFILE.read_text())
    runs = " && ".join(build.all("RUN"))
    assert "gcc" in runs, "the build stage needs a C compiler for the cffi extension"
    assert re.search(r"pip install \.(\s|$)", runs), "the build stage installs the package"
    assert "import pool._sha256d" in runs, "a missing extension must fail the build"
    copied = " ".join(build.all("COPY"))
    for needed in ("pyproject.toml", "setup.py", "native/", "pool/", "miners/"):
        assert needed in copied
        assert (REPO / needed).exists()
    # The runtime stage takes the built virtualenv and nothing that compiles.
    assert any(c.startswith(f"--from={build.name} ") for c in runtime.all("COPY"))
    assert "gcc" not in " ".join(runtime.all("RUN"))


def test_runtime_runs_as_non_root_and_exposes_the_ports():
    runtime = stages(DOCKERFILE.read_text())[-1]
    (user,) = runtime.all("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(rf"useradd .*{re.escape(user.split(':')[0])}", " ".join(runtime.all("RUN")))
    user_at = next(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in runtime.instructions[user_at:]), "RUN after USER"
    exposed = {port for args in runtime.all("EXPOSE") for port in args.split()}
    assert {"3333", "8080"} <= exposed
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert json.loads(entrypoint) == ["gridpool"] and json.loads(cmd)[0] == "run"
    assert runtime.all("HEALTHCHECK") and "/healthz" in runtime.all("HEALTHCHECK")[0]


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, `!` re-includes,
    a directory pattern covers what is under it, `**/` matches any depth."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        tails = ["/".join(parts[i:]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for c in candidates for p in prefixes + (
                tails if pattern.startswith("**/") else [])):
            result = not negate
    return result


def test_dockerignore_sends_sources_but_no_local_builds():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for kept in ("pyproject.toml", "setup.py", "README.md", "native/sha256d.c",
                 "native/build_sha256d.py", "pool/app.py", "pool/bitcoin/block.py",
                 "miners/fleet.py"):
        assert not ignored(kept, patterns), kept
    for dropped in (".venv/bin/python", ".git/config", "pool/_sha256d.abi3.so",
                    "pool/__pycache__/app.cpython-311.pyc", "pool/_sha256d.c", "tests/conftest.py",
                    "gridpool.egg-info/PKG-INFO", "deploy/docker-compose.yml"):
        assert ignored(dropped, patterns), dropped
