"""Masking secrets before anything is written: API keys, `Authorization` headers, passwords.

Three nets, applied to every string and every key of an event (nested ones included):
- keys that name a secret (`api_key`, `authorization`, `password`, …): the value is masked;
- patterns that look like secrets (`sk-…`, `Bearer …`, `lsv2_…`, URL passwords, and the
  patterns configured in `KEEL_OBSERVABILITY__REDACT_PATTERNS`);
- literal values known to be secret (the configured API keys), wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_PATTERNS", "MASK", "SECRET_KEYS", "Redactor"]

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

_INLINE = re.compile(
    r"(?i:(?P<key>\b(?:authorization|proxy-authorization|x-api-key|api[_-]?key|password|passwd"
    r"|secret|client_secret|access_token|refresh_token)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:bearer\s+|basic\s+)?)[^\s,;&\"'}]+"
    r"|(?P<scheme>://)[^/\s:@]+:[^/\s@]+(?=@)"
)
"""`api_key=…`, `Authorization: …` written inline, and `user:password@` in URLs."""


def _inline_mask(match: re.Match[str]) -> str:
    if match.group("scheme"):
        return f"://{MASK}"
    return f"{match.group('key')}{MASK}"


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered.endswith(("_api_key", "_secret", "_password"))


@dataclass(frozen=True)
class Redactor:
    """Masks secrets in log events; build it once, call it for every event."""

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    secrets: tuple[str, ...] = ()
    """Literal secret values (e.g. the configured API keys); masked wherever they appear."""
    _regex: re.Pattern[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        parts = [re.escape(s) for s in self.secrets if len(s) >= 4]
        parts += [f"(?:{p})" for p in self.patterns]
        regex = re.compile("|".join(parts)) if parts else None
        object.__setattr__(self, "_regex", regex)

    @classmethod
    def build(cls, extra_patterns: Iterable[str] = (), secrets: Iterable[str] = ()) -> Redactor:
        """The default patterns plus configured ones, and the literal secrets to mask."""
        return cls(
            patterns=(*DEFAULT_PATTERNS, *extra_patterns),
            secrets=tuple(s for s in secrets if s),
        )

    def text(self, value: str) -> str:
        """`value` with every secret in it masked."""
        if self._regex is not None:
            value = self._regex.sub(MASK, value)
        return _INLINE.sub(_inline_mask, value)

    def value(self, value: Any, depth: int = 0) -> Any:
        """Any JSON-like value, masked recursively (bounded depth; unknown objects as text)."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth > 8:
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
