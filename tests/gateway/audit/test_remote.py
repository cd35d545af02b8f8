"""``schakel audit verify | query | inzage --node``: an FG's command line against a running
node over real mTLS, with the officer's certificate and no database or node secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.audit import notes
from gateway.cli import main
from tests.support.audit import record
from tests.support.pair import Pair
from tests.support.pki import HL, RR

BSN = "123456782"


def _officer(pair: Pair, role: str = "fg", node_id: str = RR) -> list[str]:
    """--node and the officer's files, and the keys an FG of RR pins."""
    cred = pair.fed.officer(node_id, role)
    return [
        "--node",
        pair.nodes[RR].address,
        "--cert",
        str(cred.cert_file),
        "--key",
        str(cred.key_file),
        "--ca",
        str(pair.fed.ca_file),
        "--log-key",
        pair.nodes[RR].parts.log_key.vkey(),
        "--witness-key",
        pair.nodes[HL].parts.witness_verifier.vkey(),
        "--quorum",
        "1",
    ]


async def _run(args: Sequence[str], stdin: str = "") -> int:
    """The command in a thread (it runs its own event loop), stdin given."""

    def call() -> int:
        import io  # noqa: PLC0415
        import sys  # noqa: PLC0415

        saved = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            return main(list(args))
        finally:
            sys.stdin = saved

    return await asyncio.to_thread(call)


async def _cosigned(pair: Pair) -> None:
    """Wait until HL has cosigned a checkpoint over all of RR's log (three records at least)."""
    parts = pair.nodes[RR].parts
    while (await asyncio.to_thread(parts.audit.head)).size < 3:
        await parts.audit.append(record())
    size = (await asyncio.to_thread(parts.audit.head)).size
    for _ in range(150):
        final = await asyncio.to_thread(parts.checkpointer.latest_final)
        if final is not None and final.size >= size:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {size} was cosigned")


async def test_a_remote_inzage_is_audited_and_its_proofs_checked(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cosigned(pair)
    officer = _officer(pair)
    # The first asks the node for Y; the second takes Y from the ceremony's public transcript.
    assert await _run(["audit", "inzage", "-", *officer], stdin=BSN) == 0
    first = capsys.readouterr().out
    assert "Records met inclusiebewijs: 0" in first
    await _cosigned(pair)
    html = tmp_path / "inzage.html"
    ceremony = str(pair.keys.ceremony_file)
    args = ["audit", "inzage", "-", *officer, "--federation-key", ceremony]
    assert await _run([*args, "--html", str(html)], stdin=BSN) == 0
    second = capsys.readouterr().out
    # The first lookup is on the person's record, with its proof, naming the FG.
    assert "Records met inclusiebewijs: 1" in second
    assert "schakel.v1.AuditService/SubjectReport" in second
    assert f"aanvrager: schakel://officer/{RR}/fg;" in second
    page = html.read_text(encoding="utf-8")
    assert "inzage in het logboek" in page and "functionaris gegevensbescherming" in page
    assert BSN not in first + second + page


async def test_remote_refusals_are_one_line(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    partner = pair.fed.partner(RR, "politie-rr", "politie")
    officer = _officer(pair)
    args = list(officer)
    args[args.index("--cert") + 1] = str(partner.cert_file)
    args[args.index("--key") + 1] = str(partner.key_file)
    assert await _run(["audit", "verify", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"schakel audit: --node {pair.nodes[RR].address}: PERMISSION_DENIED")
    assert len(err.strip().splitlines()) == 1
    assert await _run(["audit", "inzage", "123456789", *officer]) == 2
    assert "elfproef" in capsys.readouterr().err
    at = officer.index("--ca")
    assert await _run(["audit", "verify", *officer[:at], *officer[at + 2 :]]) == 2
    assert "--node needs --ca" in capsys.readouterr().err


async def test_remote_verify_proves_growth_and_catches_a_rollback(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cosigned(pair)
    state = tmp_path / "rr.checkpoint"
    args = ["audit", "verify", *_officer(pair), "--state", str(state), "--sample", "5"]
    assert await _run(args) == 0
    out = capsys.readouterr().out
    assert "signed with the pinned log key, 1 of 1 witnesses cosigned" in out
    assert "records proven included in the checkpoint" in out
    assert "the node's own check of every leaf: OK" in out
    kept, _ = notes.open_checkpoint(state.read_bytes(), pair.nodes[RR].parts.log_key)

    # The verification itself is audited; wait until the log has grown past the kept checkpoint.
    for _ in range(100):
        if (await asyncio.to_thread(pair.nodes[RR].parts.audit.head)).size > kept.size:
            break
        await asyncio.sleep(0.1)
    await _cosigned(pair)
    assert await _run(args) == 0
    grown = capsys.readouterr().out
    assert f"consistent with the checkpoint of size {kept.size} seen before" in grown

    # A checkpoint the node signed for a bigger tree than it now shows: rolled back or forked.
    signer = pair.nodes[RR].parts.checkpointer.signer
    ahead = notes.sign_checkpoint(notes.Checkpoint(RR, kept.size + 1000, bytes(32)), signer)
    state.write_bytes(ahead)
    assert await _run(args) == 1
    assert "rolled back or forked" in capsys.readouterr().out

    # An officer who pinned another key: the checkpoint does not verify.
    other = notes.Signer.generate(RR).verifier().vkey()
    wrong = [*args[: args.index("--log-key") + 1], other, *args[args.index("--log-key") + 2 :]]
    state.unlink()
    assert await _run(wrong) == 1
    assert "FAILED: the node's latest checkpoint does not verify" in capsys.readouterr().out


async def test_a_remote_query_prints_the_nodes_records(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    await _cosigned(pair)
    officer = _officer(pair, "procesregisseur")[:8]  # no keys: query trusts the channel
    assert await _run(["audit", "query", *officer, "--node-id", RR, "--limit", "3"]) == 0
    # The nodes log to stdout too, in this process; the records are the JSON lines.
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    assert [json.loads(line).get("index", "0") for line in lines] == ["0", "1", "2"]
    assert await _run(["audit", "query", *officer]) == 2
    assert "--node needs --node-id" in capsys.readouterr().err
