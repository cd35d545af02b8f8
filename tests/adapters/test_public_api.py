"""The partner SDK's public face: one import, no node inside it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import adapters.sdk

NODE_ONLY = ("sqlalchemy", "alembic", "psycopg", "yaml", "gateway")
"""Top-level packages a partner who installs the SDK alone does not have."""
NODE_SUBMODULES = ("grpc_health.v1", "grpc_reflection.v1alpha")
"""The server extras: grpc itself imports their bare packages when they are installed."""


def test_importing_the_sdk_pulls_in_nothing_of_the_node() -> None:
    code = "import sys, adapters.sdk; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "adapters.sdk" in loaded
    pulled = [
        name
        for name in loaded
        if name.partition(".")[0] in NODE_ONLY or name.startswith(NODE_SUBMODULES)
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
