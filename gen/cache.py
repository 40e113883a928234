"""Stage result cache keyed by configuration and code version."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def source_digest(*packages: str) -> str:
    """Return a SHA-256 over the Python sources of the named top-level packages."""
    digest = hashlib.sha256()
    for package in sorted(packages):
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def stage_key(*parts: Any) -> str:
    """Return a short SHA-256 of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageCache:
    """Results of earlier stages in ``<out>/.cache/<stage>.json``.

    A cached result counts only when its key matches and every file it names still exists.
    """

    def __init__(self, out_dir: Path):
        self.dir = out_dir / ".cache"

    def load(self, stage: str, key: str) -> dict | None:
        path = self.dir / f"{stage}.json"
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if entry.get("key") != key:
            return None
        if not all(Path(p).exists() for p in entry.get("files", [])):
            return None
        return entry["result"]

    def store(self, stage: str, key: str, result: dict, files: list[Path]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{stage}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "files": [str(f) for f in files], "result": result},
                                  indent=1, default=str))
        os.replace(tmp, path)
