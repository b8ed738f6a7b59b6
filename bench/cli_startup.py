"""How fast `persona-runner` starts, against the floor of importing typer and rich.

Three whole processes, started in turn round after round (A B C, A B C, ...), so that a
machine whose speed drifts slows all three alike:

- baseline: `python -c "import typer, rich"`, what any typer CLI pays before its own code;
- `persona-runner --help`: lists every command and imports none (target: within 3x the baseline);
- `persona-runner catalog validate`, run where there is no ./catalog.json so it checks the
  shipped catalog (target: within 5x).

For each command: the median over the rounds of its CPU time (user + system, from the
kernel's accounting of the finished process) and of its wall time. Each ratio is the median
of the round-by-round ratios to the baseline; the verdict is on CPU time, which other work
on a shared machine disturbs less than wall time.

    .venv/bin/python bench/cli_startup.py --rounds 15

Prints figures; never asserts timings. Exits 1 only when a command failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    label: str
    argv: list[str]
    target_ratio: float | None  # None: the baseline itself


@dataclass(frozen=True)
class Sample:
    cpu: float
    wall: float


class BenchError(RuntimeError):
    """A command failed: its timings would measure an error path."""


def commands() -> list[Command]:
    script = Path(sys.executable).with_name("persona-runner")
    runner = str(script) if script.exists() else shutil.which("persona-runner")
    if runner is None:
        raise BenchError("no persona-runner script next to this Python or on PATH; install the project first")
    return [
        Command("python -c 'import typer, rich'", [sys.executable, "-c", "import typer, rich"], None),
        Command("persona-runner --help", [runner, "--help"], 3.0),
        Command("persona-runner catalog validate", [runner, "catalog", "validate"], 5.0),
    ]


def check(command: Command, cwd: str) -> None:
    """Run once untimed (also warming the file cache) and fail loudly if the command does not succeed."""
    done = subprocess.run(command.argv, capture_output=True, text=True, cwd=cwd, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"{command.label} exited {done.returncode}: {done.stderr.strip()}")


def timed(command: Command, cwd: str) -> Sample:
    """One whole run: wall time around it, CPU time as the kernel accounted it to the process."""
    start = time.perf_counter()
    process = subprocess.Popen(command.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if process.returncode != 0:
        raise BenchError(f"{command.label} exited {process.returncode} during the timed runs")
    return Sample(cpu=usage.ru_utime + usage.ru_stime, wall=wall)


def measure(runs: list[Command], rounds: int, cwd: str) -> dict[str, list[Sample]]:
    for command in runs:
        check(command, cwd)
    samples: dict[str, list[Sample]] = {command.label: [] for command in runs}
    for _round in range(rounds):
        for command in runs:
            samples[command.label].append(timed(command, cwd))
    return samples


def median_ratio(samples: list[Sample], baseline: list[Sample], figure: str) -> float:
    return statistics.median(getattr(a, figure) / getattr(b, figure) for a, b in zip(samples, baseline, strict=True))


def report(runs: list[Command], samples: dict[str, list[Sample]]) -> str:
    baseline = samples[runs[0].label]
    width = max(len(command.label) for command in runs)
    lines = [
        f"cli_startup: {len(baseline)} interleaved rounds, medians; ratios are round by round against the baseline",
        f"{'command':<{width}}  {'cpu s':>7}  {'wall s':>7}  {'cpu x':>6}  {'wall x':>6}  target  verdict",
    ]
    for command in runs:
        runs_of = samples[command.label]
        cpu = statistics.median(sample.cpu for sample in runs_of)
        wall = statistics.median(sample.wall for sample in runs_of)
        row = f"{command.label:<{width}}  {cpu:>7.3f}  {wall:>7.3f}"
        if command.target_ratio is None:
            lines.append(f"{row}  {'1.00':>6}  {'1.00':>6}  baseline")
            continue
        cpu_ratio = median_ratio(runs_of, baseline, "cpu")
        wall_ratio = median_ratio(runs_of, baseline, "wall")
        verdict = "OK" if cpu_ratio <= command.target_ratio else "MISS"
        lines.append(f"{row}  {cpu_ratio:>6.2f}  {wall_ratio:>6.2f}  {command.target_ratio:>5.1f}x  {verdict}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start-up time of persona-runner against importing typer and rich.")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the three commands (default 15)")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 500:
        parser.error(f"--rounds must be between 1 and 500, got {args.rounds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # An empty directory: no ./catalog.json there, so `catalog validate` checks the shipped catalog.
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as cwd:
        try:
            runs = commands()
            samples = measure(runs, args.rounds, cwd)
        except BenchError as exc:
            print(f"cli_startup: {exc}", file=sys.stderr)
            return 1
    print(report(runs, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
