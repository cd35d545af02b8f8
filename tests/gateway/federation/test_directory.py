"""The signed directory: unsigned, tampered or foreign-signed is refused; reload keeps the good."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError
from gateway.federation import DirectoryError, DirectoryStore, load_directory_store
from gateway.federation.directory import load_directory, load_directory_key
from policy import signing
from tests.support.cluster import write_directory
from tests.support.pki import Federation

NODES = [("zvh-a", "127.0.0.1:7001"), ("zvh-b", "127.0.0.1:7002")]


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(directory, private key, public key) with a signed two-node directory."""
    key = tmp_path / "dir.key"
    pub = signing.generate_key(key)
    path = tmp_path / "directory.yaml"
    write_directory(path, key, NODES)
    return path, key, pub


def test_signed_directory_loads(keyed: tuple[Path, Path, Path]) -> None:
    path, _key, pub = keyed
    directory = load_directory(path, load_directory_key(pub))
    assert [(p.node_id, p.address) for p in directory.peers] == NODES
    assert directory.get("zvh-b") is not None
    assert directory.get("zvh-b").identity == "schakel://node/zvh-b"  # type: ignore[union-attr]
    assert [p.node_id for p in directory.others("zvh-a")] == ["zvh-b"]


def test_unsigned_directory_is_refused(keyed: tuple[Path, Path, Path]) -> None:
    path, _key, pub = keyed
    signing.signature_path(path).unlink()
    with pytest.raises(DirectoryError, match="unsigned"):
        load_directory(path, load_directory_key(pub))


def test_tampered_directory_is_refused(keyed: tuple[Path, Path, Path]) -> None:
    path, _key, pub = keyed
    path.write_text(path.read_text().replace("7002", "7003"))
    with pytest.raises(DirectoryError, match="does not match"):
        load_directory(path, load_directory_key(pub))


def test_directory_signed_by_another_key_is_refused(
    keyed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    path, _key, pub = keyed
    other = tmp_path / "other.key"
    signing.generate_key(other)
    signing.sign_bundle(path, other)
    with pytest.raises(DirectoryError, match="does not match"):
        load_directory(path, load_directory_key(pub))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: []\n", "'nodes' is empty"),
        ("nodes:\n  - {id: zvh-a}\n", r"nodes\[0\]\.address: is required"),
        ("nodes:\n  - {id: Bad_Id, address: 'h:1'}\n", r"nodes\[0\]\.id"),
        (
            "nodes:\n  - {id: zvh-a, address: 'nohost'}\n",
            r"nodes\[0\]\.address: expected host:port",
        ),
        ("nodes:\n  - {id: zvh-a, address: 'h:1', colour: red}\n", "unknown key"),
        (
            "nodes:\n  - {id: zvh-a, address: 'h:1'}\n  - {id: zvh-a, address: 'h:2'}\n",
            "listed twice",
        ),
        (
            "nodes:\n  - {id: zvh-a, address: 'h:1', identity: 'schakel://node/zvh-b'}\n",
            "not the certificate URI",
        ),
    ],
)
def test_malformed_signed_directory_names_the_entry(
    keyed: tuple[Path, Path, Path], text: str, message: str
) -> None:
    path, key, pub = keyed
    path.write_text(text)
    signing.sign_bundle(path, key)
    with pytest.raises(DirectoryError, match=message):
        load_directory(path, load_directory_key(pub))


def test_reload_takes_a_new_signed_directory_and_keeps_the_last_good(
    keyed: tuple[Path, Path, Path],
) -> None:
    path, key, pub = keyed
    now = [0.0]
    store = DirectoryStore(path, load_directory_key(pub), interval=5.0, clock=lambda: now[0])
    write_directory(path, key, [*NODES, ("zvh-c", "127.0.0.1:7003")])
    assert len(store.current().peers) == 2, "not due yet: the file is not looked at"
    now[0] = 5.0
    assert [p.node_id for p in store.current().peers] == ["zvh-a", "zvh-b", "zvh-c"]
    assert store.generation == 1
    path.write_text(path.read_text().replace("7003", "7999"))  # tampered: signature stale
    now[0] = 10.0
    assert store.refresh() is False
    assert store.current().get("zvh-c").address == "127.0.0.1:7003"  # type: ignore[union-attr]
    signing.signature_path(path).unlink()  # unsigned
    assert store.refresh() is False
    assert len(store.current().peers) == 3
    assert store.generation == 1


def test_config_errors_name_the_federation_key(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "pki")
    node = fed.node("zvh-a")
    key = tmp_path / "dir.key"
    pub = signing.generate_key(key)
    path = tmp_path / "directory.yaml"
    write_directory(path, key, NODES)
    path.write_text(path.read_text() + "# edited\n")
    config = fed.config(node, extra=f'\n[federation]\ndirectory = "{path}"\npublic_key = "{pub}"\n')
    with pytest.raises(ConfigError, match=r"federation\.directory: .*does not match"):
        load_directory_store(config)
    with pytest.raises(ConfigError, match=r"federation\.directory and federation\.public_key"):
        fed.config(node, extra=f'\n[federation]\ndirectory = "{path}"\n')


def test_cli_creates_signs_and_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, path = tmp_path / "dir.key", tmp_path / "dir.yaml"
    assert main(["federation", "keygen", str(key)]) == 0
    pub = signing.public_key_path(key)
    args = ["federation", "create", str(path), "--node", "zvh-a=127.0.0.1:7001"]
    assert main([*args, "--node", "zvh-b=127.0.0.1:7002"]) == 0
    assert main(args) == 2, "create refuses to overwrite"
    validate = ["federation", "validate", str(path), "--public-key", str(pub)]
    assert main(validate) == 1
    assert "unsigned" in capsys.readouterr().err
    assert main(["federation", "sign", str(path), "--key", str(key)]) == 0
    assert main(validate) == 0
    assert "2 node(s)" in capsys.readouterr().out
    path.write_text(path.read_text().replace("7002", "7009"))
    assert main(validate) == 1
    path.write_text("nodes:\n  - {id: zvh-a}\n")
    assert main(["federation", "sign", str(path), "--key", str(key)]) == 1
    assert "refusing to sign" in capsys.readouterr().err
    bad = ["federation", "create", str(tmp_path / "x.yaml"), "--node", "zvh-a"]
    assert main(bad) == 2


def test_signals_collect_reads_the_signed_directory(
    keyed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _key, pub = keyed
    fed = Federation(tmp_path / "pki")
    collector = fed.collector()
    args = [
        "signals",
        "collect",
        "--directory",
        str(path),
        "--directory-key",
        str(pub),
        "--cert",
        str(collector.cert_file),
        "--key",
        str(collector.key_file),
        "--ca",
        str(fed.ca_file),
        "--from",
        "2026-01-01",
        "--to",
        "2026-02-01",
        "--out",
        str(tmp_path / "report"),
        "--timeout",
        "0.5",
    ]
    main(args)
    assert "asked 2 node(s)" in capsys.readouterr().err
    path.write_text(path.read_text().replace("7002", "7009"))
    assert main(args) == 2
    assert "does not match" in capsys.readouterr().err


def test_fan_out_concurrency_must_be_positive(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "pki")
    with pytest.raises(ConfigError, match=r"federation\.concurrency: must be at least 1"):
        fed.config(fed.node("zvh-a"), extra="\n[federation]\nconcurrency = 0\n")
