"""Counts of the requests the fuzzers send, reported at the end of the run.

The fuzz tests call `record`; `tests/conftest.py` prints one summary line from `summary()`
in pytest's terminal summary (shown with or without `-s`) and writes the counts to
`bench/out/fuzz-count.json`, so the number of requests tried is on record.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "bench" / "out" / "fuzz-count.json"

_lock = threading.Lock()
COUNTS: Counter[str] = Counter()


def record(kind: str, n: int = 1) -> None:
    """Count `n` requests of `kind` (e.g. "schemathesis", "hypothesis-v4", "5xx")."""
    with _lock:
        COUNTS[kind] += n


def summary() -> str | None:
    """One line for the terminal; None when no fuzz test ran."""
    with _lock:
        counts = dict(COUNTS)
    requests = {k: v for k, v in counts.items() if k.startswith("requests:")}
    if not requests:
        return None
    total = sum(requests.values())
    parts = ", ".join(f"{k.removeprefix('requests:')} {v}" for k, v in sorted(requests.items()))
    problems = ", ".join(f"{k} {counts.get(k, 0)}" for k in ("5xx", "non-envelope"))
    valid = counts.get("valid-ok", 0)
    interleaved = f"; {valid} valid calls interleaved answered ErrorCode 0" if valid else ""
    return f"fuzz: {total} requests ({parts}); {problems}{interleaved}"


def write() -> None:
    with _lock:
        counts = dict(COUNTS)
    if not any(k.startswith("requests:") for k in counts):
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    total = sum(v for k, v in counts.items() if k.startswith("requests:"))
    OUT.write_text(
        json.dumps({"total_requests": total, **dict(sorted(counts.items()))}, indent=2) + "\n"
    )
