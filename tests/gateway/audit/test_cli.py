"""``schakel audit``: keygen, verify, query, export, erase and inzage from the command line."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit import notes, tables
from gateway.cli import main
from tests.support import audit_workload as workload
from tests.support.audit import Node, node


@pytest.fixture
def logged(tmp_path: Path) -> tuple[str, Node, workload.Workload, list[str]]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    n = node(url)
    work = workload.run(n)
    key_args = ["--log-key", n.signer.verifier().vkey(), "--quorum", "2"]
    for w in n.witness_signers:
        key_args += ["--witness-key", w.verifier().vkey()]
    return url, n, work, key_args


def test_keygen_writes_a_private_key_and_a_vkey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "log"
    assert (
        main(["audit", "keygen", "--name", "zvh-haaglanden", "--kind", "log", "--out", str(out)])
        == 0
    )
    key, vkey = tmp_path / "log.key", tmp_path / "log.vkey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert vkey.read_text().startswith("zvh-haaglanden+")
    assert capsys.readouterr().out.strip() == vkey.read_text().strip()
    assert (
        main(["audit", "keygen", "--name", "zvh-haaglanden", "--kind", "log", "--out", str(out)])
        == 2
    )
    assert "exists; not overwriting" in capsys.readouterr().err


def test_verify_database_ok_and_tampered(
    logged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    url, n, _, key_args = logged
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(n.signer.verifier().vkey() + "\n")
    args = ["--log-key", str(vkey_file), *key_args[2:]]
    assert main(["audit", "verify", "--db", url, *args]) == 0
    assert capsys.readouterr().out.startswith(
        "OK: 21 leaves verified; 1 checkpoints consistent, 1 with a quorum"
    )
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.update().where(tables.leaf.c.idx == 6).values(data=b"\x0a\x01x"))
    assert main(["audit", "verify", "--db", url, *args]) == 1
    assert "(first bad leaf: 6)" in capsys.readouterr().out
    assert main(["audit", "verify", "--db", url, "--log-key", "nonsense"]) == 2
    assert "vkey" in capsys.readouterr().err
    assert main(["audit", "verify", "--db", url, *key_args[:2], "--quorum", "1"]) == 2
    n.log.close()


def test_export_then_verify_the_bundle(
    logged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    url, n, _, key_args = logged
    bundle = tmp_path / "export.jsonl"
    assert main(["audit", "export", "--db", url, "--out", str(bundle)]) == 0
    assert "exported 21 leaves" in capsys.readouterr().out
    assert main(["audit", "export", "--db", url, "--out", str(bundle)]) == 2
    assert main(["audit", "verify", "--bundle", str(bundle), *key_args]) == 0
    assert capsys.readouterr().out.startswith("OK: 21 leaves verified")
    n.log.close()


def test_query_filters(logged, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    url, n, work, _ = logged
    pseudonym = next(iter(work.subjects.values()))
    capsys.readouterr()
    assert main(["audit", "query", "--db", url, "--subject", pseudonym]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(x["record"]["dataSubjectId"] == pseudonym for x in lines)
    assert main(["audit", "query", "--db", url, "--decision", "deny"]) == 0
    assert capsys.readouterr().out == ""
    assert (
        main(
            ["audit", "query", "--db", url, "--purpose", "zvh.complexe-casuistiek", "--limit", "5"]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert (
        main(["audit", "query", "--db", url, "--since", "2030-01-01", "--until", "2020-01-01"]) == 2
    )
    assert "until must be after since" in capsys.readouterr().err
    n.log.close()


def test_inzage_text_and_html(
    logged, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    url, n, work, key_args = logged
    transcryptor, domain = tmp_path / "transcryptor.json", tmp_path / "domain.json"
    work.keys.transcryptor_keys().save(transcryptor)
    work.domain_key.save(domain)
    bsn, pseudonym = next(iter(work.subjects.items()))
    html = tmp_path / "inzage.html"
    common = ["--db", url, "--transcryptor-keys", str(transcryptor), "--domain-key", str(domain)]
    monkeypatch.setattr("sys.stdin", io.StringIO(bsn + "\n"))
    assert main(["audit", "inzage", "-", *common, *key_args, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert pseudonym in out and "Records met inclusiebewijs: 3" in out
    assert bsn not in out and bsn not in html.read_text()
    assert pseudonym in html.read_text()
    assert main(["audit", "inzage", "123456789", *common, *key_args]) == 2
    err = capsys.readouterr().err
    assert "123456789" not in err and "elfproef" in err.lower()
    # A sealed domain key opens with its passphrase file, and only with it.
    passphrase = tmp_path / "domain.pass"
    passphrase.write_text("a passphrase for the domain key\n")
    work.domain_key.save(domain, force=True, passphrase_file=passphrase)
    monkeypatch.setattr("sys.stdin", io.StringIO(bsn + "\n"))
    assert main(["audit", "inzage", "-", *common, *key_args]) == 2
    assert "domain.json" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(bsn + "\n"))
    sealed = ["--domain-key-passphrase-file", str(passphrase)]
    assert main(["audit", "inzage", "-", *common, *sealed, *key_args]) == 0
    assert pseudonym in capsys.readouterr().out
    n.log.close()


def test_erase_keeps_verification(logged, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    url, n, _, key_args = logged
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.update().where(tables.leaf.c.idx < 10).values(retain_until_us=0))
    assert main(["audit", "erase", "--db", url]) == 0
    assert "erased 10 record bodies" in capsys.readouterr().out
    with n.log.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).where(tables.leaf.c.data.is_(None))).scalar()
            == 10
        )
    assert main(["audit", "verify", "--db", url, *key_args]) == 0
    n.log.close()


def test_verify_with_another_log_key_names_the_key_not_a_forgery(
    logged, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    url, n, _, _ = logged
    same_name = notes.Signer.generate(n.signer.name).verifier().vkey()  # a rotated or copied key
    other_node = notes.Signer.generate("zvh-elders").verifier().vkey()
    for wrong in (same_name, other_node):
        assert main(["audit", "verify", "--db", url, "--log-key", wrong]) == 1
        out = capsys.readouterr().out
        assert "The likely cause is a wrong log key" in out
        assert "forged" not in out
    n.log.close()
