"""Model specs: `provider:name` strings such as `openai:gpt-4o-mini`."""

from __future__ import annotations

from dataclasses import dataclass

from keel.errors import ModelSpecError

PROVIDERS = ("openai", "local", "scripted")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec."""

    provider: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        provider, sep, name = spec.strip().partition(":")
        if not sep or not name:
            raise ModelSpecError(f"model spec '{spec}' must look like 'provider:name'")
        if provider not in PROVIDERS:
            raise ModelSpecError(
                f"unknown model provider '{provider}' in '{spec}'; known: {', '.join(PROVIDERS)}"
            )
        return cls(provider, name)

    def __str__(self) -> str:
        return f"{self.provider}:{self.name}"
