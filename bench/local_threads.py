"""The local model's server threads on this machine: one thread against every core, side by side.

```bash
.venv/bin/python -m bench.local_threads                  # as the machine is
.venv/bin/python -m bench.local_threads --busy 4         # plus 4 busy-loop processes
.venv/bin/python -m bench.local_threads --threads 1,2,4 --repeat 5
```
One server per thread count (the default 0.5B model), started at once; each repeat sends the
same request (a ~700-token prompt, 48 tokens generated, the prompt cache off) to every
server in turn, the order rotating, so a busy machine slows all alike. Prints per thread
count the wall time, prompt and generation tokens/s (the server's own timings) as median and
range over the repeats, the ratio of each to the default's, and the load average.
`--busy N` starts N `while True: pass` processes for the measurement and ends them after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from keel.models.local import DEFAULT_LOCAL_MODEL, LocalServer, ServerOptions, start_local_server

PROMPT = (
    "You answer questions about a sales database with tables customers(id, name, country, "
    "signup_date), products(id, name, category, price) and orders(id, customer_id, "
    "product_id, quantity, status, ordered_at). "
) * 9 + "Write one SQL query that counts the customers in each country, largest first."


@dataclass
class Sample:
    wall_s: float
    prompt_tps: float
    gen_tps: float


def ask(server: LocalServer) -> Sample:
    body = {
        "model": server.info.name,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 48,
        "temperature": 0,
        "cache_prompt": False,
        "ignore_eos": True,
    }
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=1800) as response:
        reply = json.load(response)
    wall = time.perf_counter() - started
    timings = reply.get("timings", {})
    prompt_tps = timings.get("prompt_per_second", 0.0)
    return Sample(wall, prompt_tps, timings.get("predicted_per_second", 0.0))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes to add")
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    default = ServerOptions().n_threads
    print(f"{os.cpu_count()} CPUs; default threads {default}; model local:{DEFAULT_LOCAL_MODEL}")
    servers = {
        n: start_local_server(DEFAULT_LOCAL_MODEL, options=ServerOptions(n_threads=n))
        for n in counts
    }
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    samples: dict[int, list[Sample]] = {n: [] for n in counts}
    load_before = os.getloadavg()
    try:
        for repeat in range(args.repeat):
            order = counts[repeat % len(counts) :] + counts[: repeat % len(counts)]
            for n in order:
                samples[n].append(ask(servers[n]))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        for server in servers.values():
            server.stop()
    load_after = os.getloadavg()
    after = " ".join(f"{x:.2f}" for x in load_after)
    print(
        f"busy loops added: {args.busy}; load average before {load_before[0]:.2f}, "
        f"after {after}; {args.repeat} repeats"
    )
    print("| threads | wall s | prompt tok/s | generation tok/s | wall vs default |")
    print("|---|---|---|---|---|")
    base = samples.get(default)
    for n in counts:
        rows = samples[n]
        ratio = "—"
        if base is not None:
            ratios = [s.wall_s / b.wall_s for s, b in zip(rows, base, strict=True)]
            ratio = f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
        print(
            f"| {n} | {spread([s.wall_s for s in rows])} | {spread([s.prompt_tps for s in rows])}"
            f" | {spread([s.gen_tps for s in rows])} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
