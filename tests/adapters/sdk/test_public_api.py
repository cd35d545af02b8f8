"""The partner SDK's public face: one import, no node inside it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import adapters.sdk

SERVER_ONLY = ("alembic", "psycopg", "gateway")
"""Top-level packages only the node needs."""
ADAPTERS_EXTRA = ("sqlalchemy", "yaml")
"""What the `adapters` extra adds to the SDK for the SQL and drop-folder adapters."""
SERVER_SUBMODULES = ("grpc_health.v1", "grpc_reflection.v1alpha")
"""The node's gRPC extras: grpc itself imports their bare packages when they are installed."""


def _loaded_by(module: str) -> list[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert module in loaded
    return loaded


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("adapters.sdk", SERVER_ONLY + ADAPTERS_EXTRA),
        ("adapters.examples.example_partner", SERVER_ONLY),
    ],
)
def test_a_partner_program_pulls_in_nothing_of_the_node(
    module: str, absent: tuple[str, ...]
) -> None:
    pulled = [
        name
        for name in _loaded_by(module)
        if name.partition(".")[0] in absent or name.startswith(SERVER_SUBMODULES)
    ]
    assert pulled == []


def test_every_public_name_is_exported_and_the_rest_is_private() -> None:
    assert [name for name in adapters.sdk.__all__ if not hasattr(adapters.sdk, name)] == []
    public_modules = [
        m.name for m in pkgutil.iter_modules(adapters.sdk.__path__) if not m.name.startswith("_")
    ]
    # The trace context is public because the node shares it; nothing else is.
    assert public_modules == ["tracecontext"]
    wanted = {
        "PartnerClient",
        "AdapterRunner",
        "Adapter",
        "encrypt_subject",
        "decrypt_subject",
        "DomainKey",
        "PartnerRpcError",
        "RetryPolicy",
    }
    assert wanted <= set(adapters.sdk.__all__)
