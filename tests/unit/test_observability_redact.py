"""Secret redaction: keys by name, secret-looking text, configured patterns, known values."""

from __future__ import annotations

import pytest

from keel.config import load_settings
from keel.errors import ConfigError
from keel.observability.redact import MASK, Redactor


@pytest.fixture
def redactor() -> Redactor:
    return Redactor.build([r"ACME-\d{6}"], ["correct-horse-battery"])


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("calling with sk-proj-abcdefghijklmnop0123 now", "sk-proj-abcdefghijklmnop0123"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
        ('{"authorization": "Basic dXNlcjpwYXNzd29yZA=="}', "dXNlcjpwYXNzd29yZA=="),
        ("GET /v1?api_key=abc123XYZ&page=2", "abc123XYZ"),
        ("x-api-key: k-77-secret", "k-77-secret"),
        ("postgresql://keel:s3cr3t@db:5432/keel", "s3cr3t"),
        ("LangSmith key lsv2_pt_abcdef0123456789abcdef", "lsv2_pt_abcdef0123456789abcdef"),
        ("aws AKIAABCDEFGHIJKLMNOP used", "AKIAABCDEFGHIJKLMNOP"),
        ("customer ACME-123456 complained", "ACME-123456"),
        ("the password is correct-horse-battery!", "correct-horse-battery"),
    ],
)
def test_secrets_in_text_are_masked(redactor: Redactor, text: str, secret: str) -> None:
    masked = redactor.text(text)
    assert secret not in masked
    assert MASK in masked


def test_ordinary_text_is_left_alone(redactor: Redactor) -> None:
    for text in ("tokens=1520 cost=0.0", "SELECT name FROM products", "skip-list", "task-42"):
        assert redactor.text(text) == text


def test_values_under_secret_keys_are_masked_at_any_depth(redactor: Redactor) -> None:
    event = {
        "event": "model.call",
        "tokens": 120,
        "openai_api_key": "anything",
        "headers": {"Authorization": "whatever", "X-Api-Key": "k"},
        "calls": [{"args": {"password": "p", "query": "SELECT 1"}}],
        "note": None,
    }
    masked = redactor.value(event)
    assert masked["tokens"] == 120 and masked["event"] == "model.call"
    assert masked["openai_api_key"] == MASK
    assert masked["headers"] == {"Authorization": MASK, "X-Api-Key": MASK}
    assert masked["calls"][0]["args"] == {"password": MASK, "query": "SELECT 1"}
    assert masked["note"] is None


def test_objects_are_masked_through_their_text(redactor: Redactor) -> None:
    error = RuntimeError("401: key sk-abcdefghijklmnopqrstuvwx rejected")
    assert "sk-abc" not in redactor.value({"error": error})["error"]


def test_a_bad_configured_pattern_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="KEEL_OBSERVABILITY__REDACT_PATTERNS"):
        load_settings(observability={"redact_patterns": ["(unclosed"]})
