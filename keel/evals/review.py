"""The code reviewer's eval: its headline task on the seeded sample repository, checked
against the seeded defects (one comment on each defect's line, none on the clean files).

`python -m keel.evals.review [--model SPEC] [--runs N] [--json]`; `keel eval --workloads`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from keel.config import Settings
from keel.evals.workload_eval import Tally, WorkloadResult, priced_as, workload_main
from keel.reviews.store import list_comments, open_reviews
from keel.tools.review_sample import CLEAN_FILES, HEAD, SEEDED, SampleRepo, build_sample_repo

__all__ = ["comments_are_correct", "run_review_eval", "seeded_lines"]


def seeded_lines(repo: Path) -> dict[str, tuple[str, int]]:
    """Each seeded defect's (path, line at head), read from git, not from the generator."""
    found: dict[str, tuple[str, int]] = {}
    for seeded in SEEDED:
        text = subprocess.run(
            ["git", "-C", str(repo), "show", f"{HEAD}:{seeded.path}"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        hits = [n for n, line in enumerate(text.splitlines(), 1) if seeded.needle in line]
        if len(hits) == 1:
            found[seeded.kind] = (seeded.path, hits[0])
    return found


def comments_are_correct(sample: SampleRepo, comments: Sequence[dict[str, object]]) -> bool:
    """One comment on each seeded defect's line, none on a clean file, no line twice."""
    places = [(str(c["path"]), int(str(c["line"]))) for c in comments]
    wanted = set(seeded_lines(sample.path).values())
    clean = {p for p, _ in places} & set(CLEAN_FILES)
    return wanted <= set(places) and not clean and len(places) == len(set(places))


def _comments_on(engine: Engine, sample: SampleRepo) -> list[dict[str, Any]]:
    """The comments posted on this sample (every sample has the same commit ids)."""
    here = sample.path.resolve()
    found = list_comments(engine, head=sample.head_commit)
    return [c for c in found if Path(str(c["repo"])).resolve() == here]


async def run_review_eval(
    settings: Settings, *, runs: int | None = None, price_as: str = "gpt-4o-mini"
) -> WorkloadResult:
    """Review the sample change `runs` times (default 1), each on a fresh sample repository."""
    from keel.graphs.code_reviewer import agent as code_reviewer
    from keel.runtime import open_agent

    settings = priced_as(settings, price_as, "scripted:review")
    engine = open_reviews(settings)
    tally = Tally()
    async with open_agent(code_reviewer, settings=settings) as agent:
        for i in range(runs or 1):
            sample = build_sample_repo(Path(settings.home) / f"review-eval-{i}")
            result = await tally.run(agent, sample.task(), f"review-eval-{i}")
            found = _comments_on(engine, sample)
            tally.judge(sample.task(), result, comments_are_correct(sample, found))
    return tally.result("code_reviewer", settings, price_as)


def main(argv: Sequence[str] | None = None) -> int:
    return workload_main(run_review_eval, default_model="scripted:review", doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
