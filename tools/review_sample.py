"""A deterministic sample git repository for the code reviewer, with seeded defects.

`build_sample_repo(folder)` makes a small Python project ("shop") with two branches: `main`
(the base commit) and `feature/order-search` (one change on top of it). The change seeds
three defects among clean edits:

- `sql`: an SQL statement built from user input (an f-string passed to `execute`);
- `off_by_one`: a loop over `range(len(x) - 1)` that skips the last item;
- `secret`: a live-looking API token as a literal in the code;

and makes clean changes (a new, correct helper module, a documented default, a README
line) that a good review leaves alone. Author, committer and dates are fixed, so the same
code gives the same commit ids on every machine. `SEEDED` says where each defect is (a
file and a text its line contains); tests find the line numbers themselves.

```bash
python -m keel.tools.review_sample /tmp/shop-repo   # prints the headline task
```
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE",
    "CLEAN_FILES",
    "HEAD",
    "SEEDED",
    "SampleRepo",
    "Seeded",
    "build_sample_repo",
    "ensure_sample_repo",
    "headline",
]

BASE = "main"
HEAD = "feature/order-search"
SAMPLE_REPO_NAME = "review-sample"


@dataclass(frozen=True)
class Seeded:
    """One defect the change seeds."""

    kind: str
    """`sql`, `off_by_one` or `secret`."""
    path: str
    needle: str
    """A text that occurs on the defect's line (and on no other line of the file at head)."""


SEEDED: tuple[Seeded, ...] = (
    Seeded("sql", "shop/orders.py", 'f"SELECT id, total FROM orders WHERE customer_name'),
    Seeded("off_by_one", "shop/pricing.py", "for i in range(len(amounts) - 1):"),
    Seeded("secret", "shop/payments.py", 'PAYMENTS_API_TOKEN = "sk_live_'),
)
CLEAN_FILES = ("README.md", "shop/config.py", "shop/money.py")
"""Files the change edits without a defect."""

_BASE_FILES: dict[str, str] = {
    "README.md": "# shop\n\nA small order service.\n",
    "shop/__init__.py": '"""The shop service."""\n',
    "shop/config.py": '''"""Settings read from the environment."""

import os


def database_url() -> str:
    """Where the orders live."""
    return os.environ["SHOP_DATABASE_URL"]
''',
    "shop/orders.py": '''"""Reading orders."""

import sqlite3


def order_total(conn: sqlite3.Connection, order_id: int) -> float:
    """The total of one order."""
    row = conn.execute("SELECT total FROM orders WHERE id = ?", (order_id,)).fetchone()
    return float(row[0]) if row else 0.0
''',
    "shop/pricing.py": '''"""Prices and totals."""


def subtotal(amounts: list[float]) -> float:
    """The sum of the amounts."""
    return sum(amounts)
''',
}

_HEAD_FILES: dict[str, str] = {
    "README.md": "# shop\n\nA small order service.\n\nSearch orders by customer name with "
    "`find_orders`.\n",
    "shop/config.py": '''"""Settings read from the environment."""

import os


def database_url() -> str:
    """Where the orders live (a local SQLite file when unset)."""
    return os.environ.get("SHOP_DATABASE_URL", "sqlite:///shop.db")
''',
    "shop/orders.py": '''"""Reading orders."""

import sqlite3


def order_total(conn: sqlite3.Connection, order_id: int) -> float:
    """The total of one order."""
    row = conn.execute("SELECT total FROM orders WHERE id = ?", (order_id,)).fetchone()
    return float(row[0]) if row else 0.0


def find_orders(conn: sqlite3.Connection, customer_name: str) -> list[tuple[int, float]]:
    """The orders of the customer with this name, as typed in the search box."""
    query = f"SELECT id, total FROM orders WHERE customer_name = '{customer_name}'"
    return [(int(r[0]), float(r[1])) for r in conn.execute(query).fetchall()]
''',
    "shop/pricing.py": '''"""Prices and totals."""


def subtotal(amounts: list[float]) -> float:
    """The sum of the amounts."""
    return sum(amounts)


def running_totals(amounts: list[float]) -> list[float]:
    """The total after each amount, in order."""
    totals: list[float] = []
    running = 0.0
    for i in range(len(amounts) - 1):
        running += amounts[i]
        totals.append(running)
    return totals
''',
    "shop/payments.py": '''"""Charging cards through the payment provider."""

from collections.abc import Callable
from typing import Any

PAYMENTS_API_TOKEN = "sk_live_51HxQ2rLmN8pTsUvWz4Kb7Yc9Df3Gh6Jk"
PAYMENTS_URL = "https://payments.example.com/v1/charges"


def charge(post: Callable[..., Any], order_id: int, cents: int) -> Any:
    """Ask the provider to charge an order (`post` is the HTTP client's post)."""
    return post(
        PAYMENTS_URL,
        json={"order": order_id, "amount": cents},
        headers={"Authorization": f"Bearer {PAYMENTS_API_TOKEN}"},
        timeout=10,
    )
''',
    "shop/money.py": '''"""Formatting amounts for people."""


def format_money(amount: float, currency: str = "USD") -> str:
    """The amount with two decimals and thousands separators, e.g. `1,234.50 USD`."""
    return f"{amount:,.2f} {currency}"
''',
}


@dataclass(frozen=True)
class SampleRepo:
    path: Path
    base: str
    head: str
    base_commit: str
    head_commit: str

    def task(self) -> str:
        return headline(self.path)


def headline(path: Path | str) -> str:
    """The code reviewer's headline task on the sample repository at `path`."""
    return f"Review the change in {path} from {BASE} to {HEAD}"


_IDENTITY = {
    "GIT_AUTHOR_NAME": "Sam Sample",
    "GIT_AUTHOR_EMAIL": "sam@example.com",
    "GIT_COMMITTER_NAME": "Sam Sample",
    "GIT_COMMITTER_EMAIL": "sam@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}


def _git(folder: Path, *args: str, when: str = "2026-01-05T09:00:00+00:00") -> str:
    env = {**os.environ, **_IDENTITY, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def build_sample_repo(folder: Path) -> SampleRepo:
    """Make the sample repository in `folder` (replaced if it exists)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _git(folder, "init", "--quiet", f"--initial-branch={BASE}")
    _write(folder, _BASE_FILES)
    _git(folder, "add", "--all")
    _git(folder, "commit", "--quiet", "-m", "The order service")
    base = _git(folder, "rev-parse", "HEAD")
    _git(folder, "switch", "--quiet", "-c", HEAD)
    _write(folder, _HEAD_FILES)
    _git(folder, "add", "--all")
    _git(
        folder,
        "commit",
        "--quiet",
        "-m",
        "Order search, running totals and card payments",
        when="2026-01-06T15:30:00+00:00",
    )
    head = _git(folder, "rev-parse", "HEAD")
    _git(folder, "switch", "--quiet", BASE)
    return SampleRepo(folder, BASE, HEAD, base, head)


def ensure_sample_repo(home: Path) -> SampleRepo:
    """The sample repository under `home` (`<home>/review-sample`), made when missing."""
    folder = home / SAMPLE_REPO_NAME
    if (folder / ".git").is_dir():
        try:
            base = _git(folder, "rev-parse", f"{BASE}^{{commit}}")
            head = _git(folder, "rev-parse", f"{HEAD}^{{commit}}")
            return SampleRepo(folder, BASE, HEAD, base, head)
        except subprocess.CalledProcessError:
            pass
    return build_sample_repo(folder)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m keel.tools.review_sample FOLDER", file=sys.stderr)
        return 2
    sample = build_sample_repo(Path(argv[0]).resolve())
    print(sample.task())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
