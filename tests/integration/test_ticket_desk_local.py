"""The embedded local model on the ticket desk's headline task, for real: `keel run --agent
ticket_desk --json` (no API key, no network) on the sample help desk, checked against the
databases: exactly one refund of the order's total (computed from the shop's raw rows),
tied to the ticket, and a public comment on it.

Slow (a real model on the CPU), like tests/integration/test_local_model_e2e.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from keel.config import load_settings
from keel.tickets import sample
from keel.tickets.db import open_helpdesk
from keel.tools.sample_db import ensure_sample_db
from tests.integration.test_local_server import require_weights

pytestmark = [pytest.mark.slow, pytest.mark.local_workload]


def test_local_model_refunds_the_duplicate_charge(tmp_path: Path) -> None:
    require_weights()
    home = tmp_path / "home"
    shop = ensure_sample_db(home)
    open_helpdesk(load_settings(home=home), f"sqlite:///{shop}")
    desk = home / "helpdesk.sqlite"
    with sqlite3.connect(desk) as conn:
        (order,) = conn.execute(
            "SELECT order_id FROM helpdesk_tickets WHERE id = ?", (sample.DOUBLE_CHARGE,)
        ).fetchone()
    with sqlite3.connect(shop) as conn:
        (total,) = conn.execute(
            "SELECT ROUND(SUM(quantity * unit_price), 2) FROM order_items WHERE order_id = ?",
            (order,),
        ).fetchone()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OPENAI_"))}
    env.update(
        KEEL_HOME=str(home),
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        KEEL_LIMITS__MODEL_TIMEOUT_S="600",
        KEEL_LIMITS__ITERATION_TIMEOUT_S="900",
        KEEL_LIMITS__RUN_TIMEOUT_S="2400",
    )
    question = (
        f"Ticket {sample.DOUBLE_CHARGE}: the customer was charged twice for order {order} — "
        "refund the duplicate and tell them"
    )
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--agent", "ticket_desk", "--json", question],
        capture_output=True,
        text=True,
        env=env,
        timeout=3000,
        check=False,
    )
    result = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    actions = [
        s["action"] for s in result.get("metadata", {}).get("trace", []) if s["node"] == "act"
    ]
    for step in result.get("metadata", {}).get("trace", []):  # the record, with -s
        if step["node"] in ("reason", "act"):
            print(step["node"], step.get("action"), step.get("action_input"),
                  str(step.get("observation") or "")[:300])  # fmt: skip
    print("local model tools:", actions, "answer:", result.get("output"))
    with sqlite3.connect(desk) as conn:
        refunds = conn.execute(
            "SELECT amount_cents, ticket_id FROM helpdesk_refunds WHERE order_id = ?", (order,)
        ).fetchall()
        comments = conn.execute(
            "SELECT body FROM helpdesk_comments WHERE ticket_id = ? AND public "
            "AND idempotency_key IS NOT NULL",
            (sample.DOUBLE_CHARGE,),
        ).fetchall()
    assert refunds == [(round(float(total) * 100), sample.DOUBLE_CHARGE)], (refunds, actions)
    assert len(comments) >= 1, actions
    assert result.get("success"), done.stderr[-3000:]
