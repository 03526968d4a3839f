"""Paired windows: the issue-7 ratios measured with both sides in the same stretch of time.

On a shared VM the speed of a vCPU moves by up to 2x within seconds (other tenants on the same
physical cores: measured FMA peak of one vCPU 98-170 GFLOP/s within one minute). The main
tables of run_all.py time every system in its own process, minutes apart, so a ratio between
two systems carries that drift. Here both sides of a ratio stay alive as worker processes that
read their jobs from stdin (`JOBFILE -` / `--jobs -`), and the two are timed alternately in short
windows, A B, B A, A B, ...: every window's ratio compares the two under the same conditions,
and the median over windows is the figure. Run by run_all.py after its rounds.

One-thread workers are pinned to one and the same CPU: left to the scheduler, an idle worker
wakes up on the vCPU it last ran on, so the two sides of a pair could sit on different vCPUs
for the whole measurement, and the two vCPUs of this VM are not equally fast at any moment (an
A/B test of one library against a copy of itself read 1.16x unpinned, 0.99x pinned).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from typing import Callable, NamedTuple


class Pair(NamedTuple):
    """One ratio: `a` and `b` are (worker key, job line); `extra` are callables run once per
    window whose values are recorded too (e.g. the FMA peak at both thread counts)."""
    name: str
    a: tuple
    b: tuple
    extra: tuple = ()


class StreamWorker:
    """A timing worker kept alive: one job line in, one `result LABEL SECONDS ...` line out."""

    def __init__(self, cmd: list, env: dict, cpu: int | None = None):
        """cpu: pin the process (all its threads) to this CPU."""
        self.err = tempfile.TemporaryFile(mode="w+")  # (a pipe left unread could fill and block)
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, bufsize=1, preexec_fn=pin)

    def time(self, job: str) -> float:
        """Seconds per call of the job; RuntimeError if the worker failed or ended."""
        self.p.stdin.write(job.rstrip("\n") + "\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line:
                self.err.seek(0)
                tail = " ".join(self.err.read().split())[-300:]
                raise RuntimeError(f"worker ended (exit {self.p.poll()}): {tail}")
            f = line.split()
            if len(f) >= 3 and f[0] == "result":
                return float(f[2])
            if f and f[0] in ("failed", "error:"):
                raise RuntimeError(line.strip())

    def close(self) -> None:
        try:
            self.p.stdin.close()
            self.p.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
        self.err.close()


def alternate(commands: dict, pairs: list, windows: int, log: Callable[[str], None]) -> dict:
    """Times every pair in `windows` alternating windows. commands[key] = (cmd, env, cpu)
    starts the worker of that key (once, on first use; pinned to cpu unless None). Returns {name: {"a": [s], "b": [s], "extra": {k:
    [v]}}} or {name: {"error": text}}."""
    workers: dict = {}
    out: dict = {}

    def worker(key):
        if key not in workers:
            workers[key] = StreamWorker(*commands[key])
        return workers[key]

    try:
        for p in pairs:
            log(f"paired: {p.name} ...")
            rec = {"a": [], "b": [], "extra": {k: [] for k, _ in p.extra}}
            try:
                # one untimed pass each: loads, first-call set-up, the worker's own warm-up
                worker(p.a[0]).time(p.a[1])
                worker(p.b[0]).time(p.b[1])
                for i in range(windows):
                    sides = (("a", p.a), ("b", p.b)) if i % 2 == 0 else (("b", p.b), ("a", p.a))
                    for side, (key, job) in sides:
                        rec[side].append(worker(key).time(job))
                    for k, fn in p.extra:
                        rec["extra"][k].append(fn())
                out[p.name] = rec
            except (RuntimeError, OSError) as e:
                out[p.name] = {"error": str(e)[:300]}
                log(f"  {e}")
    finally:
        for w in workers.values():
            w.close()
    return out


def ratios(rec: dict, scale: float = 1.0) -> list:
    """Window by window a/b (times scale)."""
    return [scale * x / y for x, y in zip(rec["a"], rec["b"])]


def summary(values: list) -> tuple:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
