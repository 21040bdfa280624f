"""The payload of a JAX leaf: the function exported to StableHLO with `jax.export`, once as it is and,
where JAX can batch it, once vectorized over a leading client axis of symbolic size.

    {"format": "fed.jax", "version": 1, "single": base64, "batched": base64 or null}

Each module is `jax.export.Exported.serialize()`'s bytes: StableHLO and its calling convention, no Python.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

FORMAT = "fed.jax"
VERSION = 1


@dataclass(frozen=True)
class JaxPayload:
    single: bytes
    batched: bytes | None

    def encode(self) -> bytes:
        document = {
            "format": FORMAT,
            "version": VERSION,
            "single": base64.b64encode(self.single).decode("ascii"),
            "batched": None
            if self.batched is None
            else base64.b64encode(self.batched).decode("ascii"),
        }
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> JaxPayload:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"A JAX leaf's payload is not JSON: {error}.") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"A JAX leaf's payload must have format {FORMAT!r}.")
        if document.get("version") != VERSION:
            raise ValueError(
                f"A JAX leaf's payload has version {document.get('version')!r}; this fed-jax reads {VERSION}."
            )
        try:
            single = base64.b64decode(document["single"], validate=True)
            batched = document.get("batched")
            return JaxPayload(
                single, None if batched is None else base64.b64decode(batched, validate=True)
            )
        except (KeyError, TypeError, binascii.Error) as error:
            raise ValueError(f"A JAX leaf's payload is malformed: {error!r}.") from None
