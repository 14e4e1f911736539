"""The redaction prefilter skips the regular expressions only for text they cannot match:
whatever the text, `Redactor.text` masks exactly what the expressions alone mask."""

from __future__ import annotations

import random

import pytest

from keel.observability.redact import MASK, Redactor, _inline, _inline_mask

PIECES = [
    "sk-proj-abcdefghijklmnop0123",
    "SK-PROJ-ABCDEFGHIJKLMNOP0123",
    "lsv2_pt_abcdef0123456789abcdef",
    "ghp_abcdefghijklmnop0123",
    "github_pat_abcdefghijklmnop0123",
    "xoxb-1234567890-abc",
    "AKIAABCDEFGHIJKLMNOP",
    "akiaabcdefghijklmnop",
    "Authorization: Bearer eyJhbGciOi.payload.sig",
    "BEARER abc.def",
    "basic dXNlcjpwYXNzd29yZA==",
    "api_key=abc123XYZ",
    "API-KEY: zzz",
    "x-api-key: k-77-secret",
    "PassWord = hunter2",
    "client_secret=s",
    "refresh_token: r",
    "postgresql://keel:s3cr3t@db:5432/keel",
    "correct-horse-battery",
    "ünïcode",
    "ſecret=1",
    "baſic dXNlcjpwYXNzd29yZA==",
    '{"rows": [["Laptop", 1200.5]], "row_count": 1}',
    "Laptop Basic ($95,293.70)",
    "Basic\tdXNlcjpwYXNzd29yZA==",
    "bearer\x0btok.en",
    "Bearer\n\neyJhbGciOi",
    "a bearer, basically",
    "Basic",
    "SELECT name FROM products",
    " ",
    "-",
    "_",
    ":",
    "=",
    "\n",
]


def reference(redactor: Redactor, text: str) -> str:
    """What the two expressions alone make of `text` (no prefilter)."""
    regex = redactor._regex
    if regex is not None:
        text = regex.sub(MASK, text)
    return _inline().sub(_inline_mask, text)


@pytest.mark.parametrize(
    "redactor",
    [
        Redactor(),
        Redactor.build(secrets=["correct-horse-battery"]),
        Redactor.build([r"ACME-\d{6}"]),
    ],
    ids=["defaults", "with a secret", "with a pattern"],
)
def test_masks_exactly_what_the_expressions_mask(redactor: Redactor) -> None:
    rng = random.Random(19)
    texts = [*PIECES]
    for _ in range(3000):
        parts = rng.choices(PIECES, k=rng.randint(1, 5))
        text = "".join(parts)
        cut = rng.randint(0, len(text))  # a trigger split across the cut still counts
        texts.append(text[cut:] + text[:cut])
    for text in texts:
        assert redactor.text(text) == reference(redactor, text), text


def test_bearer_and_basic_without_a_token_after_them_skip_the_expressions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Basic` or `Bearer` followed by whitespace and a token character may be a credential;
    the words in ordinary text (a product name) cannot match, and are not run through every
    pattern."""
    from keel.observability import redact as module

    # a pattern another test in this worker remembered would turn the prefilter off
    monkeypatch.setattr(module, "_REMEMBERED", module._Remembered())
    prefilter = Redactor()._compile()[1]
    assert prefilter is not None
    for text in ("Laptop Basic ($95,293.70)", '["Laptop Basic", 95293.7]', "a bearer, basic"):
        assert not prefilter(text, text.lower()), text
    for text in ("Basic dXNlcjpwYXNzd29yZA==", "auth: bearer\tabc", "BEARER abc.def"):
        assert prefilter(text, text.lower()), text


def test_a_secret_after_long_plain_text_is_masked() -> None:
    redactor = Redactor()
    plain = '{"columns": ["name", "revenue"], "rows": [["Laptop", 1200.5]]} ' * 50
    assert redactor.text(plain) == plain
    assert redactor.text(plain + " Bearer abc.def") == plain + f" {MASK}"


JSON_PIECES = [
    *PIECES,
    "Laptop Basic ($95,293.70)",
    'Laptop Basic\\", 95293.7',
    "Basic\tdXNlcjpwYXNzd29yZA==",
    "bearer\x0btok.en",
    "Bearer\n\neyJhbGciOi",
    'quo"te\\hidden-77',
    "sk-",
    "Cookie",
]
JSON_KEYS = ["name", "rows", "OPENAI_API_KEY", "Set-Cookie", "db_password", "note", "x", "token"]


def _payload(rng: random.Random, depth: int = 0) -> object:
    """A JSON-like value of random shape, its strings and keys drawn from the pieces."""
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        text = "".join(rng.choices(JSON_PIECES, k=rng.randint(1, 3)))
        return rng.choice([text, 7, 1.5, None, True])
    if roll < 0.7:
        return [_payload(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(JSON_KEYS): _payload(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_json_said_clean_needs_no_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whenever `json_may_hold_secret` says a value's JSON holds nothing to mask, masking the
    value changes nothing (so a tracer may send it unwalked), escaped JSON included."""
    import orjson

    from keel.observability import redact as module
    from keel.observability.redact import json_may_hold_secret, redact, remember_secrets

    # what other tests remembered stays out (a remembered pattern turns the fast path off)
    monkeypatch.setattr(module, "_REMEMBERED", module._Remembered())
    monkeypatch.setattr(module, "_PROCESS", Redactor(max_depth=32))
    remember_secrets(['quo"te\\hidden-77'])
    rng = random.Random(23)
    clean = 0
    for _ in range(4000):
        value = _payload(rng)
        if not json_may_hold_secret(orjson.dumps(value).decode()):
            clean += 1
            assert redact(value) == value, value
    assert clean > 400  # the fast path is taken, not only the walk
    product = {"rows": [["Laptop Basic", 95293.7]], "text": "Laptop Basic ($95,293.70)"}
    assert not json_may_hold_secret(orjson.dumps(product).decode())


def test_a_remembered_pattern_turns_the_json_fast_path_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from keel.observability import redact as module

    monkeypatch.setattr(module, "_REMEMBERED", module._Remembered())
    monkeypatch.setattr(module, "_PROCESS", Redactor(max_depth=32))
    assert not module.json_may_hold_secret('{"note": "ticket ACME-123456"}')
    module.remember_secrets([], [r"ACME-\d{6}"])
    assert module.json_may_hold_secret('{"note": "ticket ACME-123456"}')
