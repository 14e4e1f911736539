"""Compressed checkpoint values: zlib with a preset dictionary of the agent state's names.

A checkpoint of the agent graph is ~1.5 KB of msgpack, most of it the same names again and
again (channel and node names, `TraceStep` and message fields, LangChain class paths), and
a step's writes are a few hundred bytes each: too small for plain zlib to find much to
share. A preset dictionary holding those names lets even a 100-byte value point back into
it, so a checkpoint shrinks to a fifth and a write to about half.

It plugs in as LangGraph's `EncryptedSerializer` with a compressing "cipher": a stored type
gains a suffix (`msgpack+z1`), a value stored before (no suffix) reads as it always did, and
LangGraph's msgpack allowlist handling recognises the wrapper. `z1` names this dictionary:
it is frozen, as every value written with it needs it to be read back (a test pins its
digest). A new dictionary gets a new name (`z2`); reading keeps every old one.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

import ormsgpack
from langgraph.checkpoint.serde.base import CipherProtocol, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["MissingBaseError", "ZlibCipher", "compressed", "dictionary"]

MIN_SIZE = 48
"""Values shorter than this are stored as they are (`+z0`): compressing them saves nothing."""

_NAMES_V1: tuple[str, ...] = (
    # LangGraph's checkpoint, metadata and pregel names
    "v",
    "ts",
    "id",
    "channel_values",
    "channel_versions",
    "versions_seen",
    "updated_channels",
    "pending_sends",
    "__input__",
    "__start__",
    "__interrupt__",
    "__resume__",
    "__error__",
    "__scheduled__",
    "__pregel_tasks",
    "source",
    "step",
    "parents",
    "loop",
    "input",
    "update",
    "fork",
    # LangChain messages
    "langchain_core.messages.human",
    "HumanMessage",
    "langchain_core.messages.system",
    "SystemMessage",
    "langchain_core.messages.tool",
    "ToolMessage",
    "tool_call_id",
    "artifact",
    "status",
    "success",
    "error",
    "langchain_core.messages.ai",
    "AIMessage",
    "model_validate_json",
    "content",
    "additional_kwargs",
    "response_metadata",
    "model_name",
    "type",
    "name",
    "example",
    "tool_calls",
    "invalid_tool_calls",
    "tool_call",
    "args",
    "usage_metadata",
    "input_token_details",
    "output_token_details",
    "cache_read",
    "lc_run--",
    # Keel's tools and settings values
    "sql_query",
    "calculator",
    "query",
    "expression",
    "rows",
    "columns",
    "default",
    "simple",
    "standard",
    "complex",
    "native",
    "react",
    "scripted",
    "completed",
    "started",
    "failed",
    # Limits, RunPolicy, RunBudget, Outcome, ErrorRecord
    "max_iterations",
    "max_model_attempts",
    "max_repairs",
    "max_tool_attempts",
    "tool_timeout_s",
    "iteration_timeout_s",
    "model_timeout_s",
    "run_timeout_s",
    "tools",
    "approval",
    "usd",
    "tokens",
    "output",
    "error_code",
    "degraded",
    "code",
    "kind",
    "message",
    # UsageTotals
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "model_calls",
    "cached_tokens",
    # TraceStep and signals
    "thought",
    "action",
    "action_input",
    "observation",
    "ms",
    "cost",
    "attempt",
    "signal",
    "answer",
    "tools",
    "repair",
    "retry",
    "degrade",
    "downgrade",
    "continue",
    "iteration",
    "node",
    "run_id",
    # the agent state's channels and nodes (most frequent last)
    "question",
    "model_spec",
    "limits",
    "policy",
    "deadline",
    "iteration_deadline",
    "model_attempt",
    "retry_delay_s",
    "tool_retry",
    "tool_attempt",
    "tried_tiers",
    "repair_attempt",
    "repair_hint",
    "rejected_output",
    "fatal_error",
    "errors",
    "usage",
    "outcome",
    "tenant",
    "tier",
    "budget",
    "context_summary",
    "summary_upto",
    "messages",
    "trace",
    "reason",
    "act",
    "observe",
    "fallback",
    "finish",
    "branch:to:reason",
    "branch:to:act",
    "branch:to:observe",
    "branch:to:fallback",
    "branch:to:finish",
)


def dictionary() -> bytes:
    """The `z1` preset dictionary: each name as msgpack encodes it (length header and bytes),
    so it matches the names inside a stored value."""
    return b"".join(ormsgpack.packb(name) for name in _NAMES_V1)


_Z1 = dictionary()


class MissingBaseError(LookupError):
    """A value compressed against a base (`zb:<id>`) was read before its base was loaded."""

    def __init__(self, base_id: str) -> None:
        super().__init__(f"checkpoint base '{base_id}' is not loaded")
        self.base_id = base_id


BASES_KEPT = 2048
"""Bases a saver keeps decompressed in memory (each ~1.5 KB): one per thread being run, so
a thousand concurrent runs still find their base."""


class ZlibCipher(CipherProtocol):
    """The compressing "cipher": `z1` (zlib, the `z1` dictionary) or `z0` (as it was), and
    `zb:<id>` (zlib, the `z1` dictionary then the plaintext of base `<id>`: a value that
    shares most of its bytes with the base, as a checkpoint does with one a few steps
    before it, stores little more than what differs). A base is read before the values
    compressed against it (`add_base`); the last `BASES_KEPT` stay in memory."""

    def __init__(self) -> None:
        self.bases: OrderedDict[str, bytes] = OrderedDict()

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        if len(plaintext) < MIN_SIZE:
            return "z0", plaintext
        packer = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=_Z1)
        packed = packer.compress(plaintext) + packer.flush()
        return ("z1", packed) if len(packed) < len(plaintext) else ("z0", plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername == "z0":
            return ciphertext
        if ciphername == "z1":
            unpacker = zlib.decompressobj(-15, zdict=_Z1)
            return unpacker.decompress(ciphertext) + unpacker.flush()
        if ciphername.startswith("zb:"):
            unpacker = zlib.decompressobj(-15, zdict=_Z1 + self.base(ciphername[3:]))
            return unpacker.decompress(ciphertext) + unpacker.flush()
        raise ValueError(f"unknown checkpoint compression '{ciphername}'")

    def base(self, base_id: str) -> bytes:
        """The plaintext of a loaded base (`MissingBaseError` if it is not loaded)."""
        try:
            self.bases.move_to_end(base_id)
        except KeyError:
            raise MissingBaseError(base_id) from None
        return self.bases[base_id]

    def add_base(self, base_id: str, plaintext: bytes, *, evict: bool = True) -> None:
        """Keep a base in memory; with `evict`, forget the least recently used beyond
        `BASES_KEPT` (a read loading a thread's bases keeps them all until the next
        write)."""
        self.bases[base_id] = plaintext
        self.bases.move_to_end(base_id)
        while evict and len(self.bases) > BASES_KEPT:
            self.bases.popitem(last=False)

    def encrypt_against(self, plaintext: bytes, base_id: str) -> tuple[str, bytes]:
        """`plaintext` compressed against loaded base `base_id`: (`zb:<id>`, bytes)."""
        packer = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=_Z1 + self.base(base_id))
        return f"zb:{base_id}", packer.compress(plaintext) + packer.flush()


def compressed(serde: SerializerProtocol | None = None) -> EncryptedSerializer:
    """`serde` (LangGraph's default `JsonPlusSerializer` when None) with compressed values."""
    return EncryptedSerializer(ZlibCipher(), serde or JsonPlusSerializer())
