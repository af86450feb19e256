"""Step-by-step progress for long work: each step prints what it does, then how long it took."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Steps:
    title: str
    out: TextIO | None = None  # None: sys.stdout at the time of printing
    done: list[tuple[str, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        print(f"== {self.title}", file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[dict]:
        """Time one step. The body may set note["text"] to print a result beside the time."""
        n = len(self.done) + 1
        print(f"[{n:2}] {what} ...", file=self.out, flush=True)
        note: dict = {}
        start = time.perf_counter()
        try:
            yield note
        except BaseException:
            print(f"     FAILED after {time.perf_counter() - start:.3f} s", file=self.out, flush=True)
            raise
        took = time.perf_counter() - start
        text = note.get("text", "")
        self.done.append((what, took, text))
        print(f"     done in {took * 1000:,.1f} ms{'  - ' + text if text else ''}", file=self.out, flush=True)

    def summary(self) -> None:
        width = max((len(w) for w, _, _ in self.done), default=10)
        print(f"\n== {self.title}: summary", file=self.out)
        for what, took, text in self.done:
            print(f"  {what:<{width}}  {took * 1000:>10,.1f} ms  {text}", file=self.out)
        print(f"  {'total':<{width}}  {sum(t for _, t, _ in self.done) * 1000:>10,.1f} ms", file=self.out,
              flush=True)
