"""`keel` start-up against `import langgraph.graph`: CPU per process, and what a run imports.

```bash
.venv/bin/python -m bench.startup                  # 15 rounds, about a minute
.venv/bin/python -m bench.startup --rounds 30 --repeat 3
.venv/bin/python -m bench.startup --instructions   # callgrind counts instead; ~5 minutes
```
Each round starts one fresh interpreter per side, in turn (so a busy machine slows every
side alike), and takes the child's CPU (user + system, from `wait4`) and its wall time:

- `langgraph`: `python -c "import langgraph.graph"`, the baseline every ratio divides by;
- `import keel.cli`: `python -c "import keel.cli"`;
- `keel --help`: the CLI's help, through its entry point;
- `keel run echo`: `keel run --model scripted:echo` (one model call, no tool), to the answer:
  start-up and the smallest run, on the default tools and settings;
- `keel run`: `keel run --model scripted:sales` on the sales question, to the answer (the
  run itself included, two tools and three model calls: a floor, not start-up alone).

Every child may cache its compiled bytecode (in a private `PYTHONPYCACHEPREFIX`, filled by a
warm-up round), as an installed package does: with `PYTHONDONTWRITEBYTECODE` inherited,
Keel's own ~100 modules would be compiled from source in every child while LangGraph's come
precompiled from site-packages.

Then, once, the modules `keel run` loads that `import langgraph.graph` does not
(`python -X importtime`), by top-level package with their cumulative import time, and the
packages (or modules) each run does not use that were imported anyway (`UNUSED`, plus
`sqlglot` for the run without a SQL query).
The measurement is repeated `--repeat` times; each ratio is printed as its range, with the
load average. `--instructions` counts each side's instructions under callgrind instead (one
process each, after the warm-up): the same whatever the load, so a change of a few percent
shows (needs `valgrind` on the PATH).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
QUESTION = "Which 3 products had the highest revenue last month, and what was their total?"
KEEL = [PYTHON, "-c", "import sys; from keel.cli import main; sys.argv[0] = 'keel'; main()"]
SIDES: dict[str, list[str]] = {
    "langgraph": [PYTHON, "-c", "import langgraph.graph"],
    "import keel.cli": [PYTHON, "-c", "import keel.cli"],
    "keel --help": [*KEEL, "--help"],
    "keel run echo": [*KEEL, "run", "--model", "scripted:echo", "Hello"],
    "keel run": [*KEEL, "run", "--model", "scripted:sales", QUESTION],
}
UNUSED = (
    "redis",
    "limits",
    "sqlalchemy",
    "psycopg",
    "fastapi",
    "uvicorn",
    "procrastinate",
    "attr",
    "rich.traceback",
    "rich.pretty",
    "greenlet",
    "rich._emoji_codes",
    "prometheus_client",
    "keel.testing.review_script",
    "keel.testing.ticket_policy",
    "keel.testing.report_script",
    "keel.nodes._planned",
    "keel.nodes._planned_sql",
    "keel.nodes._planned_verify",
    "keel.tools.sql_examples",
    "keel.checkpoints.retention",
    "keel.artifacts",
    "keel.cli.artifacts",
    "keel.cli.durable",
    "keel.cli.new",
    "keel.project.config_file",
    "keel.project.env",
    "keel.project.importer",
)
"""Packages (and modules) a run on the default settings (memory caches, no rate limits, no
Redis, SQLite checkpoints, tracing off) of these scripted models has no use for: attrs and
Rich's traceback and pretty-printer come with structlog's exception formatters, which Keel's
logs do not use, greenlet with its deprecated thread-local storage; Rich's emoji codes with
markup; prometheus-client with metrics a one-shot `keel run` could not serve; the scripted
policies of the other workloads; the planned flow (models whose answers are composed:
`local:`); checkpoint retention (prune, rollback); the modules registering the other
commands (`keel.cli.COMMAND_MODULES`) and the artifact store; reading a `langgraph.json`
(the children run where there is none)."""
UNUSED_WITHOUT_SQL = ("sqlglot",)
"""And those the echo run has no use for: it sends no SQL query."""


def child_cost(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process run to the end."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=env["KEEL_HOME"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[-1]!r} exited {proc.returncode}: {err.decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall


def measure(rounds: int, env: dict[str, str]) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in SIDES}
    for _ in range(rounds):
        for side, argv in SIDES.items():
            cpu, wall = child_cost(argv, env)
            out[side][0].append(cpu)
            out[side][1].append(wall)
    return out


LOADED_AT_EXIT = (
    "import atexit, os, sys\n"
    "atexit.register(lambda: open(os.environ['STARTUP_LOADED'], 'w').write("
    "'\\n'.join(k for k, v in sys.modules.items() if v is not None)))\n"
)
"""Prepended to a side's `-c` code: the modules loaded when it exits, one a line."""


def imported(argv: list[str], env: dict[str, str]) -> dict[str, int]:
    """Every module `argv` (`python -c CODE …`) imports, with its cumulative import time in
    µs. `-X importtime` also lists an import that failed (a module hidden as `None` in
    `sys.modules`, as `keel.cli` hides Rich's traceback from structlog): only the modules
    loaded at exit count."""
    loaded = Path(env["KEEL_HOME"]) / "loaded-modules.txt"
    argv = [argv[0], "-X", "importtime", argv[1], LOADED_AT_EXIT + argv[2], *argv[3:]]
    proc = subprocess.run(
        argv,
        env={**env, "STARTUP_LOADED": str(loaded)},
        cwd=env["KEEL_HOME"],
        capture_output=True,
        text=True,
        check=True,
    )
    at_exit = set(loaded.read_text().splitlines())
    modules: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and m.group(3) in at_exit:
            modules[m.group(3)] = int(m.group(1))
    return modules


def report_imports(env: dict[str, str], side: str, unused_too: tuple[str, ...] = ()) -> list[str]:
    base = imported(SIDES["langgraph"], env)
    run = imported(SIDES[side], env)
    extra = {m: us for m, us in run.items() if m not in base}
    packages = Counter(m.split(".")[0] for m in extra)
    tops = sorted(
        ((us, m) for m, us in extra.items() if "." not in m), reverse=True
    )  # a package's top module holds its whole import time
    lines = [
        f"`{side}` imports {len(run)} modules, {len(extra)} more than `import langgraph.graph`"
        f" ({len(base)}); by package (modules, cumulative ms):"
    ]
    lines += [
        f"  {pkg:<22}{n:>5}{(extra.get(pkg, 0) / 1000):>9.1f}"
        for pkg, n in packages.most_common(20)
    ]
    unused = [p for p in (*UNUSED, *unused_too) if p in packages or p in extra]
    lines.append(f"imported but unused by this run: {', '.join(unused) or 'none'}")
    lines.append(
        "slowest top-level imports: " + ", ".join(f"{m} {us / 1000:.0f} ms" for us, m in tops[:8])
    )
    return lines


def report_instructions(env: dict[str, str]) -> list[str]:
    """Each side's instructions under callgrind, and its ratio to `import langgraph.graph`."""
    from bench.instructions import callgrind_total

    counts = {
        s: callgrind_total(argv[1:], cwd=env["KEEL_HOME"], env=env) for s, argv in SIDES.items()
    }
    base = counts["langgraph"]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"instructions per process (callgrind; counts do not depend on the load {load}):"]
    lines += [f"  {s:<18}{n / 1e9:7.3f} G  {n / base:.3f}x" for s, n in counts.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (callgrind), not CPU"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="keel-startup-"))
    # Children run in an empty directory (a `langgraph.json` in the working directory would
    # make `keel run` load that project), importing this checkout's keel.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "KEEL_HOME": str(home),
        "PYTHONPATH": path,
        "PYTHONPYCACHEPREFIX": str(home / "pycache"),
    }
    env.pop("LANGSMITH_TRACING", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for argv in SIDES.values():  # warm the file cache and the sample database
        child_cost(argv, env)
    if args.instructions:
        print("\n".join(report_instructions(env)))
        return
    ratios: dict[str, list[float]] = {s: [] for s in SIDES if s != "langgraph"}
    walls: dict[str, list[float]] = {s: [] for s in SIDES if s != "langgraph"}
    print("CPU ms per process (user + system), median of the rounds, per repeat:")
    for n in range(args.repeat):
        got = measure(args.rounds, env)
        cpu = {s: statistics.median(v[0]) for s, v in got.items()}
        wall = {s: statistics.median(v[1]) for s, v in got.items()}
        print(
            f"  repeat {n + 1}: "
            + "  ".join(f"{s} {cpu[s] * 1000:.0f} (wall {wall[s] * 1000:.0f})" for s in SIDES)
        )
        for s in ratios:
            ratios[s].append(cpu[s] / cpu["langgraph"])
            walls[s].append(wall[s] / wall["langgraph"])
    print("ratio to `import langgraph.graph` (CPU; wall):")
    for s in ratios:
        print(
            f"  {s:<18}{min(ratios[s]):.2f}–{max(ratios[s]):.2f}; "
            f"{min(walls[s]):.2f}–{max(walls[s]):.2f}"
        )
    print("load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    print("\n".join(report_imports(env, "keel run echo", UNUSED_WITHOUT_SQL)))
    print()
    print("\n".join(report_imports(env, "keel run")))


if __name__ == "__main__":
    main()
