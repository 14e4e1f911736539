"""`bench/workloads.py` end to end with a few runs: the service, the chaos server's faults,
the checks against the databases and the duplicate count."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bench import workloads
from tests.integration.notebook_runner import restore_logging  # noqa: F401  (autouse)


def test_smoke_two_workloads_under_faults(capsys: pytest.CaptureFixture[str]) -> None:
    code = workloads.main(
        ["--agents", "data_analyst,ticket_desk,nope", "--runs", "4", "--clients", "2", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "skipped nope: no workload here" in err
    assert "| workload | runs | success | duplicate effects |" in out
    rows = {r["agent"]: r for r in json.loads(out.strip().splitlines()[-1])}
    assert set(rows) == {"data_analyst", "ticket_desk"}
    assert rows["ticket_desk"]["duplicates"] == 0 and rows["data_analyst"]["duplicates"] is None
    for row in rows.values():
        assert row["runs"] == 4 and row["success"] >= 3, row
        assert row["faults"] > 0 and row["requests"] > row["faults"]
        assert (
            row["cost_per_run_usd"] > 0 and row["p99_s"] >= row["p50_s"] >= 0.2 * 3
        )  # three model calls at least


def test_duplicates_are_counted(tmp_path: Path) -> None:
    """The count is not 0 by construction: a second refund of an order and a repeated
    comment are found."""
    from keel.config import load_settings
    from keel.tickets.db import open_helpdesk
    from keel.tools.sample_db import ensure_sample_db

    shop = ensure_sample_db(tmp_path)
    open_helpdesk(load_settings(home=tmp_path), f"sqlite:///{shop}")
    assert workloads._ticket_duplicates(tmp_path) == 0
    with sqlite3.connect(tmp_path / "helpdesk.sqlite") as conn:
        for key in ("a:1", "b:1"):
            conn.execute(
                "INSERT INTO helpdesk_refunds (order_id, ticket_id, amount_cents, reason, "
                "idempotency_key, created_at) VALUES (1, NULL, 100, 'x', ?, 'now')",
                (key,),
            )
            conn.execute(
                "INSERT INTO helpdesk_comments (ticket_id, author, body, public, "
                "idempotency_key, created_at) VALUES (1, 'a', 'same', 1, ?, 'now')",
                (key,),
            )
    assert workloads._ticket_duplicates(tmp_path) == 2
