"""``schakel audit --db``: every database problem is one clear line and exit 2, nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit import notes
from policy.pseudonyms import FederationKeys
from tests.support.audit import ORIGIN
from tests.support.paths import ROOT
from tests.support.ports import free_port


def _audit(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def key_args(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Valid options for every command, so that only ``--db`` can be wrong."""
    folder = tmp_path_factory.mktemp("keys")
    keys = FederationKeys.generate()
    transcryptor, domain = folder / "transcryptor.json", folder / "domain.json"
    keys.transcryptor_keys().save(transcryptor)
    keys.domain_key_material(ORIGIN).save(domain)
    vkey = ["--log-key", notes.Signer.generate(ORIGIN).verifier().vkey()]
    return {
        "verify": vkey,
        "query": [],
        "export": ["--out", str(folder / "export.jsonl")],
        "erase": [],
        "inzage": [
            "-",
            "--transcryptor-keys",
            str(transcryptor),
            "--domain-key",
            str(domain),
            *vkey,
        ],
    }


def _check_refused(result: subprocess.CompletedProcess[str], db: str, reason: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"schakel audit: --db {db}: "), lines[0]
    assert reason in lines[0]


@pytest.mark.parametrize("command", ["verify", "query", "export", "erase", "inzage"])
def test_a_mistyped_sqlite_path_fails_and_creates_nothing(
    command: str, key_args: dict[str, list[str]], tmp_path: Path
) -> None:
    missing = tmp_path / "typo" / "node.db"
    db = f"sqlite:///{missing}"
    result = _audit(command, "--db", db, *key_args[command], stdin="123456782\n")
    _check_refused(result, db, f"no database file at {missing}")
    assert not missing.exists() and not missing.parent.exists()
    assert not (tmp_path / "export.jsonl").exists()


def test_a_file_that_is_no_database_is_named(
    key_args: dict[str, list[str]], tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are notes, not a database\n" * 20)
    db = f"sqlite:///{path}"
    _check_refused(
        _audit("verify", "--db", db, *key_args["verify"]), db, "is not an SQLite database"
    )


def test_a_database_without_the_schema_is_named(
    key_args: dict[str, list[str]], tmp_path: Path
) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    db = f"sqlite:///{path}"
    _check_refused(_audit("erase", "--db", db), db, "holds no Schakel schema")
    assert path.stat().st_size == 0, "the command changed the file"


def test_a_server_that_does_not_answer_is_named(key_args: dict[str, list[str]]) -> None:
    db = f"postgresql+psycopg://127.0.0.1:{free_port()}/schakel"
    _check_refused(_audit("query", "--db", db), db, "cannot reach the database")


def test_a_bad_url_is_named(key_args: dict[str, list[str]]) -> None:
    result = _audit("verify", "--db", "mysql://x/y", *key_args["verify"])
    _check_refused(result, "mysql://x/y", "unsupported database 'mysql'")
