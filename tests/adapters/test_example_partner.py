"""The example partner as a real process against the simulated node over mTLS."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from schakel.v1 import partner_pb2

from policy.pseudonyms import DomainKey
from tests.support.fakedata import POLICE_MAPPING, TEAMS, create_police_db, police_data
from tests.support.partners import POLICE, Pki, RunningNode, until
from tests.support.simnode import PURPOSE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def connection(tmp_path: Path, pki: Pki, sim: RunningNode, police_keys: DomainKey) -> list[str]:
    files = {"cert": pki.partner_cert, "key": pki.partner_key, "ca": pki.ca}
    for name, pem in files.items():
        (tmp_path / f"{name}.pem").write_bytes(pem)
    # The partner keeps its domain key sealed; the example opens it with the passphrase file.
    (tmp_path / "pep.pass").write_text("the partner's own passphrase\n")
    police_keys.save(tmp_path / "domain.json", passphrase_file=tmp_path / "pep.pass")
    return [
        "--node",
        sim.target,
        "--server-name",
        "localhost",
        "--cert",
        str(tmp_path / "cert.pem"),
        "--key",
        str(tmp_path / "key.pem"),
        "--ca",
        str(tmp_path / "ca.pem"),
        "--domain-key",
        str(tmp_path / "domain.json"),
        "--domain-key-passphrase-file",
        str(tmp_path / "pep.pass"),
        "--purpose",
        PURPOSE,
    ]


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.examples.example_partner",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_refer_submits_a_referral_read_from_stdin(
    connection: list[str], sim: RunningNode
) -> None:
    bsn = police_data(persons=1).persons[1000][0]
    args = ["refer", *connection, "--theme", "complexe-casuistiek", "--external-ref", "PR-9"]
    proc = await _spawn(*args)
    out, err = await asyncio.wait_for(proc.communicate(f"{bsn}\n".encode()), 20)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "case zvh-rotterdam/case-1 opened"
    assert len(sim.node.recorded.referrals) == 1

    proc = await _spawn(*args)
    out, err = await asyncio.wait_for(proc.communicate(b"123456789\n"), 20)
    assert proc.returncode == 2
    assert "elfproef" in err.decode()
    assert "123456789" not in err.decode() + out.decode()


async def test_serve_answers_tasks_until_terminated(
    tmp_path: Path, connection: list[str], sim: RunningNode
) -> None:
    database = f"sqlite:///{tmp_path / 'politie.db'}"
    data = police_data(persons=20)
    create_police_db(sa.create_engine(database), data)
    (tmp_path / "politie.yaml").write_text(POLICE_MAPPING)
    index_database = f"sqlite:///{tmp_path / 'index.db'}"
    proc = await _spawn(
        "serve",
        *connection,
        "--sql-mapping",
        str(tmp_path / "politie.yaml"),
        "--database",
        database,
        "--index-database",
        index_database,
    )
    try:
        await until(lambda: sim.node.streams_opened >= 1, timeout=20)
        bsn, _, team = data.persons[1003]
        task = sim.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
        await until(lambda: task in sim.node.recorded.hits, timeout=10)
        assert sim.node.recorded.hits[task].contact_handle == TEAMS[team]
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "index: +20 -0, 0 rejected" in text
    assert "'answered.hit_query': 1" in text
    assert bsn not in text + err.decode()
    # The index went to its own database; the source was only read.
    index_tables = sa.inspect(sa.create_engine(index_database)).get_table_names()
    assert "schakel_pseudonym_index" in index_tables
    assert "schakel_pseudonym_index" not in sa.inspect(sa.create_engine(database)).get_table_names()


async def test_a_bad_mapping_is_reported_and_exits_2(tmp_path: Path, connection: list[str]) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\nsubjects: {}\n")
    proc = await _spawn(
        "serve", *connection, "--sql-mapping", str(tmp_path / "bad.yaml"), "--database", "sqlite://"
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert "bad.yaml" in err.decode()
