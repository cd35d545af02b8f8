"""``schakel node run`` as a real process: serves over mTLS, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.storage.exclusive import hold_sqlite
from gateway.tls import channel_credentials, node_channel
from tests.support.pki import RR, Federation
from tests.support.ports import free_port

# Only the node area: the `schakel` dispatcher also imports areas other issues deliver.
RUNNER = (
    "import argparse, sys; from gateway import node_cli; "
    "p = argparse.ArgumentParser(); node_cli.register(p.add_subparsers()); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


async def _wait_serving(target: str, creds: grpc.ChannelCredentials, deadline: float) -> int:
    while True:
        try:
            async with node_channel(target, RR, creds) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                return int(reply.status)
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_node_run_serves_and_stops_on_sigterm(federation: Federation) -> None:
    port = free_port()
    path = federation.write_config(federation.node(RR))
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "node", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        politie = federation.partner(RR, "politie-rr", "politie")
        creds = channel_credentials(federation.ca_file, politie.cert_file, politie.key_file)
        status = await _wait_serving(f"127.0.0.1:{port}", creds, time.monotonic() + 20)
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert '"event": "node_started"' in err
    assert '"event": "node_stopped"' in err
    assert (federation.root / f"state-{RR}" / "node.db").is_file()


def _node(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, "node", *argv],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=60,
        check=False,
    )


def _bad_urls(root: Path) -> dict[str, tuple[str, int, str]]:
    """Database URLs that cannot work: (url, exit code, what the message says)."""
    (root / "a-file").write_text("")
    (root / "notes.db").write_text("these are notes, not a database\n" * 20)
    return {
        "parent-is-a-file": (f"sqlite:///{root / 'a-file' / 'node.db'}", 2, "cannot create"),
        "not-a-database": (f"sqlite:///{root / 'notes.db'}", 2, "not an SQLite database"),
        "a-directory": (f"sqlite:///{root}", 2, "is a directory, not a database file"),
        "unsupported": ("postgresqlx://db/schakel", 2, "unsupported database 'postgresqlx'"),
        "bad-option": ("postgresql+psycopg://127.0.0.1/test?colour=blue", 2, "colour"),
        "unreachable": (
            f"postgresql+psycopg://u:geheim@127.0.0.1:{free_port()}/schakel",
            1,
            "cannot reach the database",
        ),
    }


CASES = ["parent-is-a-file", "not-a-database", "a-directory", "unsupported", "bad-option"]


@pytest.mark.parametrize("command", ["migrate", "run"])
@pytest.mark.parametrize("case", [*CASES, "unreachable"])
def test_a_database_problem_is_one_line_naming_database_url(
    federation: Federation, command: str, case: str
) -> None:
    url, code, reason = _bad_urls(federation.root)[case]
    path = federation.write_config(federation.node(RR), extra=f'\n[database]\nurl = "{url}"\n')
    result = _node(command, "--config", str(path))
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    kind = "cannot start" if code == 1 else "config error"
    assert lines[0].startswith(f"schakel node: {kind}: {path}: database.url: "), lines[0]
    assert reason in lines[0]
    assert "geheim" not in result.stderr


async def test_a_second_node_process_on_the_same_sqlite_file_is_refused(
    federation: Federation,
) -> None:
    port = free_port()
    path = federation.write_config(federation.node(RR))
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    first = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "node", "run", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        politie = federation.partner(RR, "politie-rr", "politie")
        creds = channel_credentials(federation.ca_file, politie.cert_file, politie.key_file)
        await _wait_serving(f"127.0.0.1:{port}", creds, time.monotonic() + 20)
        second = _node("run", "--config", str(path))
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"schakel node: cannot start: {path}: database.url: "), lines[0]
    assert f"in use by another node process (pid {first.pid})" in lines[0]
    assert "run replicas on PostgreSQL" in lines[0]
    assert first.returncode == 0, "the first node served on and stopped cleanly"
    freed = hold_sqlite(f"sqlite:///{federation.root / f'state-{RR}' / 'node.db'}")
    assert freed is not None, "once the first has stopped, the file is free again"
    freed.release()
