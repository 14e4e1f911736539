"""Masking secrets before anything is written: API keys, `Authorization` headers, passwords.

Three nets, applied to every string and every key of an event (nested ones included):
- keys that name a secret (`api_key`, `authorization`, `password`, …): the value is masked;
- patterns that look like secrets (`sk-…`, `Bearer …`, `lsv2_…`, URL passwords, and the
  patterns configured in `KEEL_OBSERVABILITY__REDACT_PATTERNS`);
- literal values known to be secret (the configured API keys), wherever they appear.

Secrets configured for an agent (`remember(settings)`: API keys, URL passwords, extra
patterns) are remembered process-wide, so every exit masks them: log lines, error records
and trace rows written into the state (hence checkpoints, `RunResult`, `keel run --json`),
tool observations and LangSmith payloads. `redact(value)` is that process-wide mask.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from keel.config import Settings

__all__ = [
    "DEFAULT_PATTERNS",
    "MASK",
    "SECRET_KEYS",
    "Redactor",
    "json_may_hold_secret",
    "redact",
    "remember",
    "remember_secrets",
    "secret_values",
]

MASK = "[REDACTED]"

SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "x-api-key",
        "x_api_key",
        "authorization",
        "proxy-authorization",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "bearer",
        "cookie",
        "set-cookie",
        "private_key",
    }
)
"""Lower-cased key names whose value is always masked (also as a suffix: `openai_api_key`)."""

DEFAULT_PATTERNS: tuple[str, ...] = (
    r"\bsk-[A-Za-z0-9_\-]{12,}",  # OpenAI-style keys (sk-…, sk-proj-…)
    r"\blsv2_[A-Za-z0-9_]{12,}",  # LangSmith keys
    r"\b(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{16,}",  # GitHub tokens
    r"\bxox[abpr]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key ids
    r"(?i:\bbearer\s+[A-Za-z0-9._~+/\-]+=*)",  # Bearer <token>
    r"(?i:\bbasic\s+[A-Za-z0-9+/]{8,}=*)",  # Basic <base64>
)
"""Secret-looking text, masked wherever it appears."""

_INLINE_PATTERN = (
    r"(?i:(?P<key>\b(?:authorization|proxy-authorization|x-api-key|api[_-]?key|password|passwd"
    r"|secret|client_secret|access_token|refresh_token)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:bearer\s+|basic\s+)?)[^\s,;&\"'}]+"
    r"|(?P<scheme>://)[^/\s:@\"']*:[^/\s\"']*(?=@)"
)
"""`api_key=…`, `Authorization: …` written inline, and `user:password@` in URLs."""


@functools.cache
def _inline() -> re.Pattern[str]:
    """`_INLINE_PATTERN`, compiled when text first holds one of `_INLINE_TRIGGERS`: compiling
    it costs more than the rest of this module's import, and most processes never need it."""
    return re.compile(_INLINE_PATTERN)


_DEFAULT_TRIGGERS: dict[str, tuple[str, ...]] = dict(
    zip(
        DEFAULT_PATTERNS,
        (
            ("sk-",),
            ("lsv2_",),
            ("ghp_", "gho_", "ghs_", "github_pat_"),
            ("xox",),
            ("akia",),
            ("bearer",),
            ("basic",),
        ),
        strict=True,
    )
)
"""Lower-cased text each default pattern's every match contains."""
_TRIGGERS = tuple(t for triggers in _DEFAULT_TRIGGERS.values() for t in triggers)
_SPACED = ("bearer", "basic")
_SPACED_TEXT = re.compile(r"\b(?:bearer|basic)\s+[a-z0-9+/._~\-]")
"""What lower-cased ASCII text holds wherever `Bearer <token>` or `Basic <base64>` matches:
the word, whitespace, a token character. The words alone are common (`Laptop Basic ($95…`,
a product name in a tool result), and running every pattern over such text took eight times
as long as the check (issue 19)."""
_INLINE_TRIGGERS = (
    "authorization",
    "api",
    "passw",
    "secret",
    "access_token",
    "refresh_token",
    "://",
)
"""Lower-cased text every match of `_INLINE_PATTERN` contains (`MASK` contains none of them, nor
of `_TRIGGERS`, so masking never creates one)."""


@dataclass(frozen=True)
class _Prefilter:
    """Whether ASCII text may hold a match: a literal secret, or a default pattern's trigger."""

    secrets: tuple[str, ...]
    triggers: tuple[str, ...]
    json_secrets: tuple[str, ...] = ()
    """`secrets` as they appear inside a JSON string (`json_may_hold_secret`)."""

    def __call__(self, value: str, lowered: str) -> bool:
        for trigger in self.triggers:  # a loop, not `any(...)`: this runs on every text
            if trigger in lowered and (trigger not in _SPACED or _SPACED_TEXT.search(lowered)):
                return True
        return any(s in value for s in self.secrets)


def _inline_mask(match: re.Match[str]) -> str:
    if match.group("scheme"):
        return f"://{MASK}"
    return f"{match.group('key')}{MASK}"


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered.endswith(("_api_key", "_secret", "_password"))


class _Remembered:
    """Secrets and patterns configured in this process; only ever grows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, None] = {}
        self.patterns: dict[str, None] = {}
        self.version = 0

    def add(self, secrets: Iterable[str], patterns: Iterable[str]) -> None:
        new_secrets = [s for s in secrets if len(s) >= _MIN_SECRET and s not in self.secrets]
        new_patterns = [p for p in patterns if p not in self.patterns]
        if not new_secrets and not new_patterns:
            return
        with self.lock:
            self.secrets.update(dict.fromkeys(new_secrets))
            self.patterns.update(dict.fromkeys(new_patterns))
            self.version += 1


_MIN_SECRET = 4
"""Shorter literal values are not masked (they would mask ordinary words)."""
_REMEMBERED = _Remembered()


def secret_values(settings: Settings) -> tuple[str, ...]:
    """The secret values `settings` holds: the API key and every configured URL's password."""
    values: list[str] = []
    if settings.openai_api_key is not None:
        values.append(settings.openai_api_key.get_secret_value())
    urls = (
        settings.openai_base_url,
        settings.checkpoint_url,
        settings.redis_url,
        settings.database_url,
        settings.service.db_url,
    )
    for url in urls:
        password = _url_password(url)
        if password:
            values += [password, unquote(password)]
    return tuple(dict.fromkeys(v for v in values if v))


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def remember_secrets(secrets: Iterable[str], patterns: Iterable[str] = ()) -> None:
    """Mask these values (and matches of these patterns) at every exit, from now on."""
    _REMEMBERED.add(secrets, patterns)


def remember(settings: Settings) -> None:
    """Mask the secrets and the extra patterns `settings` configures, at every exit."""
    remember_secrets(secret_values(settings), settings.observability.redact_patterns)


@dataclass(frozen=True)
class Redactor:
    """Masks secrets in log events; build it once, call it for every event.

    Besides its own `patterns` and `secrets`, it masks whatever was `remember`ed in this
    process (also after it was built).
    """

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    secrets: tuple[str, ...] = ()
    """Literal secret values (e.g. the configured API keys); masked wherever they appear."""
    max_depth: int = 8
    """Nesting followed by `value`; anything deeper is masked whole."""
    _compiled: tuple[int, re.Pattern[str] | None, _Prefilter | None] = field(
        init=False, repr=False, compare=False, default=(-1, None, None)
    )

    @property
    def _regex(self) -> re.Pattern[str] | None:
        return self._compile()[0]

    def _compile(self) -> tuple[re.Pattern[str] | None, _Prefilter | None]:
        version, regex, prefilter = self._compiled
        if version == _REMEMBERED.version:
            return regex, prefilter
        with _REMEMBERED.lock:
            version = _REMEMBERED.version
            secrets = [*self.secrets, *_REMEMBERED.secrets]
            patterns = [*self.patterns, *_REMEMBERED.patterns]
        # Longest first, so a secret containing another is masked whole.
        literal = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        parts = [re.escape(s) for s in literal]
        parts += [f"(?:{p})" for p in dict.fromkeys(patterns)]
        regex = re.compile("|".join(parts)) if parts else None
        # only the default patterns have known triggers: any other pattern always runs
        known = all(p in _DEFAULT_TRIGGERS for p in patterns)
        prefilter = (
            _Prefilter(tuple(literal), _TRIGGERS, tuple(_json_escaped(s) for s in literal))
            if known
            else None
        )
        object.__setattr__(self, "_compiled", (version, regex, prefilter))
        return regex, prefilter

    @classmethod
    def build(cls, extra_patterns: Iterable[str] = (), secrets: Iterable[str] = ()) -> Redactor:
        """The default patterns plus configured ones, and the literal secrets to mask."""
        return cls(
            patterns=(*DEFAULT_PATTERNS, *extra_patterns),
            secrets=tuple(s for s in secrets if s),
        )

    def text(self, value: str) -> str:
        """`value` with every secret in it masked.

        ASCII text none of whose known triggers appear in it (a configured secret, the
        fixed part of a default pattern, an inline key name, `://`) cannot match, and is
        returned without running the regular expressions: tool results and trace rows are
        long, and the alternation tries every pattern at every character."""
        regex, prefilter = self._compile()
        lowered = value.lower() if value.isascii() else None
        may_match = lowered is None or prefilter is None or prefilter(value, lowered)
        if regex is not None and may_match:
            value = regex.sub(MASK, value)
        if lowered is None or any(t in lowered for t in _INLINE_TRIGGERS):
            value = _inline().sub(_inline_mask, value)
        return value

    def value(self, value: Any, depth: int = 0) -> Any:
        """Any JSON-like value, masked recursively (bounded depth; unknown objects as text)."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth > self.max_depth:
            return MASK
        if isinstance(value, Mapping):
            return {
                k: MASK
                if isinstance(k, str) and _is_secret_key(k) and v is not None
                else self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, depth + 1) for v in value]
        return self.text(str(value))

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        """A structlog processor."""
        masked: dict[str, Any] = self.value(event)
        return masked


_PROCESS = Redactor(max_depth=32)


def json_may_hold_secret(text: str) -> bool:
    """Whether `redact` could mask anything in the value whose JSON is `text` (as orjson
    writes it: ASCII kept, `"`, `\\` and control characters escaped).

    False only when the text is ASCII, every pattern is a default one, and none of their
    triggers, the inline key names, the secret key names (`SECRET_KEYS`; the suffixes are
    among them) or the remembered secrets (as JSON escapes them) appear in it: then masking
    the value would change nothing, and a caller may skip walking it."""
    if not text.isascii():
        return True
    _, prefilter = _PROCESS._compile()
    if prefilter is None:  # a configured pattern has no known trigger
        return True
    lowered = text.lower()
    for trigger in _JSON_ANY:  # a loop, not `any(...)`: this runs on every trace payload
        if trigger in lowered:
            return True
    if _JSON_SPACED.search(lowered) is not None:
        return True
    return any(s in text for s in prefilter.json_secrets)


_JSON_TRIGGERS = tuple(t for t in _TRIGGERS if t not in _SPACED)


def _shortest(triggers: Iterable[str]) -> tuple[str, ...]:
    """The triggers no other one is part of: text holds one of them iff it holds one of
    `triggers` (`secret` is in `client_secret`, `api` in `x-api-key`)."""
    found = set(triggers)
    return tuple(sorted(t for t in found if not any(o != t and o in t for o in found)))


_JSON_ANY = _shortest((*_JSON_TRIGGERS, *_INLINE_TRIGGERS, *SECRET_KEYS))
"""Every fixed text `json_may_hold_secret` looks for, once each."""
_JSON_SPACED = re.compile(r"(?:bearer|basic)(?:\s|\\[nrtf]|\\u00[01][0-9a-f])+[a-z0-9+/._~\-]")
"""`Bearer <token>` and `Basic <base64>` need whitespace, then a token character: in JSON
the whitespace may be escaped (`\\n`, `\\u000b`). `Laptop Basic ($95…`, `Basic\\"` cannot
match."""


def _json_escaped(secret: str) -> str:
    """`secret` as it appears inside a JSON string."""
    return json.dumps(secret, ensure_ascii=False)[1:-1]


def redact(value: Any) -> Any:
    """`value` (text or JSON-like data) with the default patterns and every remembered
    secret masked: what the run writes into its state, and what LangSmith receives."""
    if isinstance(value, str):
        return _PROCESS.text(value)
    return _PROCESS.value(value)
