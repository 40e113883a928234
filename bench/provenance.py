"""Provenance of a benchmark run: the command, the commit and the machine."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    """Return git's output with trailing newlines removed (leading spaces are meaningful in
    ``git status --porcelain``), or None when git fails or is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.rstrip("\n") if out.returncode == 0 else None


def git_state(ignore: tuple[str, ...] = ()) -> dict:
    """Return the commit checked out and whether the work tree differs from it.

    Paths in ``ignore`` (relative to the repository root) do not count as changes, so the
    files a run is about to overwrite do not make their own provenance dirty.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=all")
    changed = []
    if status:
        for line in status.splitlines():
            path = line[3:].split(" -> ")[-1].strip('"')
            if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore):
                changed.append(path)
    return {"commit": commit, "dirty": bool(changed) if status is not None else None,
            "changed_files": changed}


def cpu_model() -> str:
    """Return the processor name from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Return the physical memory in GiB from /proc/meminfo (None where it does not exist)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def os_name() -> str:
    """Return the distribution name from /etc/os-release and the kernel release."""
    name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{name}, kernel {platform.release()}"


def machine() -> dict:
    """Return the CPU, core count, memory, Python and operating system of this machine."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "os": os_name(),
    }


def command_line(argv: list[str] | None = None) -> str:
    """Return the command as a user would type it: ``python -m bench`` and its arguments."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", "bench", *argv])


def collect(argv: list[str] | None, ignore: tuple[str, ...] = ()) -> dict:
    """Return the provenance block of a run: command, git state, machine and start time."""
    return {
        "command": command_line(argv),
        "git": git_state(ignore),
        "machine": machine(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def describe_machine(info: dict) -> str:
    """Return the machine as one line, for example ``AMD EPYC, 2 cores, 23.4 GiB, ...``."""
    memory = f"{info['memory_gib']:.1f} GiB" if info.get("memory_gib") else "memory unknown"
    return f"{info['cpu']}, {info['cores']} cores, {memory}, Python {info['python']}, {info['os']}"


def describe_commit(git: dict) -> str:
    """Return the commit as a short hash with ``+ uncommitted changes`` when the tree is dirty."""
    commit = (git.get("commit") or "unknown")[:12]
    if git.get("dirty"):
        return f"{commit} + uncommitted changes"
    return commit
