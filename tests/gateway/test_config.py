"""Configuration errors name the key; a node that cannot start says why and exits 2."""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from gateway import node_cli
from gateway.config import ConfigError, load_config, split_listen
from gateway.rpc.server import StartupError, build_server
from gateway.storage import alembic_config, make_engine
from gateway.tomlconfig import TableLoader, env_overrides
from tests.support.pki import RR, Federation

MINIMAL = """
[node]
id = "zvh-haaglanden"

[tls]
ca_file = "ca.pem"
cert_file = "node.pem"
key_file = "node.key"
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    for name in ("ca.pem", "node.pem", "node.key"):
        (tmp_path / name).write_text("placeholder")
    (tmp_path / "node.toml").write_text(MINIMAL)
    return tmp_path


def _error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, environ or {})
    return str(err.value)


def test_defaults_and_relative_paths(config_dir: Path) -> None:
    config = load_config(config_dir / "node.toml", {})
    assert config.node.id == "zvh-haaglanden"
    assert config.node.listen == "127.0.0.1:7443"
    assert config.node.log_level == "info"
    assert config.tls.ca_file == config_dir / "ca.pem"
    assert config.tls.crl_file is None
    assert config.database_url == f"sqlite:///{config_dir / 'state' / 'node.db'}"


def test_environment_overrides_name_section_and_key(config_dir: Path) -> None:
    (config_dir / "crl.pem").write_text("placeholder")
    config = load_config(
        config_dir / "node.toml",
        {
            "SCHAKEL_NODE__LISTEN": "0.0.0.0:8443",
            "SCHAKEL_TLS__CRL_FILE": "crl.pem",
            "schakel_database__url": "postgresql+psycopg://db/schakel",
            "SCHAKEL_TEST_PG": "not an override: no double underscore",
        },
    )
    assert config.node.listen == "0.0.0.0:8443"
    assert config.tls.crl_file == config_dir / "crl.pem"
    assert config.database_url == "postgresql+psycopg://db/schakel"


@pytest.mark.parametrize(
    ("toml", "environ", "expected"),
    [
        (MINIMAL + "bogus = 1\n", {}, "node.toml: tls.bogus: unknown key"),
        (MINIMAL + "[witnesses]\n", {}, "node.toml: witnesses: unknown key"),
        (
            MINIMAL.replace('id = "zvh-haaglanden"', "id = 7"),
            {},
            "node.id: must be a string, not int",
        ),
        (
            MINIMAL.replace('id = "zvh-haaglanden"', 'id = "ZVH Haaglanden"'),
            {},
            "node.toml: node.id: node id",
        ),
        (
            MINIMAL.replace('key_file = "node.key"\n', ""),
            {},
            "node.toml: tls.key_file: missing (required)",
        ),
        (
            MINIMAL.replace("[tls]", 'listen = "7443"\n[tls]'),
            {},
            "node.toml: node.listen: '7443' is not host:port",
        ),
        (
            MINIMAL.replace("[tls]", 'log_level = "loud"\n[tls]'),
            {},
            "node.toml: node.log_level: 'loud'",
        ),
        (
            MINIMAL + '[database]\nurl = "mysql://x"\n',
            {},
            "node.toml: database.url: must be a sqlite",
        ),
        (MINIMAL, {"SCHAKEL_NODE__LISTN": "x:1"}, "SCHAKEL_NODE__LISTN: unknown key node.listn"),
        (
            MINIMAL,
            {"SCHAKEL_NODE__LISTEN": "nope"},
            "SCHAKEL_NODE__LISTEN (environment override of node.listen): 'nope' is not host:port",
        ),
        (MINIMAL + "[tls\n", {}, "node.toml: not valid TOML"),
    ],
)
def test_errors_name_the_key(
    config_dir: Path, toml: str, environ: dict[str, str], expected: str
) -> None:
    (config_dir / "node.toml").write_text(toml)
    assert expected in _error(config_dir / "node.toml", environ)


def test_a_missing_ca_file_names_key_and_path(config_dir: Path) -> None:
    (config_dir / "ca.pem").unlink()
    message = _error(config_dir / "node.toml")
    assert (
        message
        == f"{config_dir / 'node.toml'}: tls.ca_file: file not found: {config_dir / 'ca.pem'}"
    )


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    node_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_node_run_with_a_missing_ca_exits_2_with_one_clear_line(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config_dir / "ca.pem").unlink()
    assert _cli(["node", "run", "--config", str(config_dir / "node.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("schakel node: config error: ")
    assert "tls.ca_file: file not found" in err
    assert "Traceback" not in err


def test_node_run_with_a_missing_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(["node", "run", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


async def test_unusable_tls_files_name_their_key(federation: Federation) -> None:
    node = federation.node(RR)
    config = federation.config(node)
    node.cert_file.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"tls\.cert_file: .* holds no PEM certificate"):
        build_server(config)
    other = federation.partner(RR, "politie-rr", "politie")
    node = federation.node(RR, force=True)
    node.key_file.write_bytes(other.key_file.read_bytes())
    with pytest.raises(ConfigError, match=r"tls\.key_file: .* does not belong to"):
        build_server(config)


async def test_a_crl_from_another_ca_is_a_config_error(
    federation: Federation, tmp_path: Path
) -> None:
    config = federation.config(federation.node(RR))
    (tmp_path / "other").mkdir()
    federation.crl_file.write_bytes(Federation(tmp_path / "other").crl_file.read_bytes())
    with pytest.raises(ConfigError, match=r"tls\.crl_file: .* not signed by the CA"):
        build_server(config)


async def test_a_taken_port_names_node_listen(federation: Federation) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = federation.write_config(federation.node(RR))
        path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        with pytest.raises(
            StartupError, match=rf"node\.listen: cannot listen on 127\.0\.0\.1:{port}"
        ):
            build_server(load_config(path, {}))


def test_node_migrate_brings_the_schema_to_head(
    federation: Federation, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = federation.write_config(federation.node(RR), extra=f'\n[database]\nurl = "{db_url}"\n')
    assert _cli(["node", "migrate", "--config", str(path)]) == 0
    assert "newest revision" in capsys.readouterr().out
    engine = make_engine(db_url)
    try:
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        with engine.connect() as conn:
            current = conn.execute(sa.text("select version_num from alembic_version")).scalar()
        assert current == head
        # Running it again is harmless.
        assert _cli(["node", "migrate", "--config", str(path)]) == 0
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _PeerSection:
    """Shaped like a section a later issue adds: typed scalars, lists, nested tables."""

    node_id: str
    port: int = 7443
    enabled: bool = True
    tags: list[str] = field(default_factory=list)
    ca_file: Path | None = None


@dataclass(frozen=True)
class _Sections:
    peers: list[_PeerSection] = field(default_factory=list)
    main: _PeerSection | None = None


def _load_sections(table: dict[str, object], environ: dict[str, str]) -> _Sections:
    overrides = env_overrides(environ)
    loader = TableLoader("x.toml", Path("/etc/schakel"), overrides)
    built: _Sections = loader.build(_Sections, table, "")
    loader.check_unused_overrides()
    return built


def test_an_optional_section_can_come_from_the_environment_alone() -> None:
    sections = _load_sections({}, {"SCHAKEL_MAIN__NODE_ID": "zvh-c"})
    assert sections.main == _PeerSection("zvh-c")


def test_typed_fields_for_later_sections_convert_from_toml_and_environment() -> None:
    table = {
        "peers": [{"node_id": "zvh-a", "tags": ["x"], "ca_file": "ca.pem"}],
        "main": {"node_id": "zvh-b"},
    }
    environ = {
        "SCHAKEL_MAIN__PORT": "9443",
        "SCHAKEL_MAIN__ENABLED": "false",
        "SCHAKEL_MAIN__TAGS": "a, b",
    }
    sections = _load_sections(table, environ)
    assert sections.peers == [
        _PeerSection("zvh-a", tags=["x"], ca_file=Path("/etc/schakel/ca.pem"))
    ]
    assert sections.main == _PeerSection("zvh-b", port=9443, enabled=False, tags=["a", "b"])


@pytest.mark.parametrize(
    ("table", "environ", "expected"),
    [
        (
            {"peers": [{"node_id": "a", "port": "x"}]},
            {},
            "x.toml: peers[0].port: must be an integer, not str",
        ),
        (
            {"peers": [{"node_id": "a", "enabled": 1}]},
            {},
            "peers[0].enabled: must be true or false, not int",
        ),
        ({"peers": {"node_id": "a"}}, {}, "x.toml: peers: must be a list, not dict"),
        ({"peers": [{"port": 1}]}, {}, "x.toml: peers[0].node_id: missing (required)"),
        (
            {"main": {"node_id": "a"}},
            {"SCHAKEL_MAIN__PORT": "12x"},
            "SCHAKEL_MAIN__PORT (environment override of main.port): '12x' is not an integer",
        ),
        (
            {"main": {"node_id": "a"}},
            {"SCHAKEL_MAIN__ENABLED": "ja"},
            "SCHAKEL_MAIN__ENABLED (environment override of main.enabled): 'ja' is not true",
        ),
    ],
)
def test_typed_field_errors_name_the_key(
    table: dict[str, object], environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load_sections(table, environ)
    assert expected in str(err.value)


def test_an_ipv6_listen_address_splits() -> None:
    assert split_listen("[::1]:7443") == ("::1", 7443)
    with pytest.raises(ValueError, match="port '99999'"):
        split_listen("[::1]:99999")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[policy]\nbundle = 'ca.pem'\n", "policy.public_key: policy.bundle and policy.public_key"),
        ("[audit]\nquorum = 1\n", "audit.quorum: must be from 0 to the number of peers (0)"),
        ("[cases]\nretention_days = 0\n", "cases.retention_days: must be at least 1, not 0"),
        ("[pseudonyms]\ndomain_key = 'nope.json'\n", "pseudonyms.domain_key: file not found"),
        (
            "[[peers]]\nid = 'Peer A'\naddress = 'x:1'\nlog_key = 'k'\nwitness_key = 'w'\n",
            "peers[0]: peer id 'Peer A'",
        ),
        (
            "[pseudonyms]\ntranscryptor_keys = 'ca.pem'\n",
            "pseudonyms.transcryptor_keys: unknown key",
        ),
        (
            "[pseudonyms]\ndomain_key = 'ca.pem'\n",
            "transcryptors: [[transcryptors]] and pseudonyms.domain_key go together",
        ),
        (
            "[[transcryptors]]\nid = 'tc-a'\naddress = 'x:1'\nidentity = 'schakel://transcryptor/tc-a'\n",
            "transcryptors: [[transcryptors]] and pseudonyms.domain_key go together",
        ),
        (
            "[pseudonyms]\ndomain_key = 'ca.pem'\n[[transcryptors]]\nid = 'tc-a'\n"
            "address = 'x:1'\nidentity = 'schakel://transcryptor/tc-b'\n",
            "transcryptors[0].identity: must be schakel://transcryptor/tc-a",
        ),
        (
            "[pseudonyms]\ndomain_key = 'ca.pem'\n[[transcryptors]]\nid = 'tc-a'\n"
            "address = 'nowhere'\nidentity = 'schakel://transcryptor/tc-a'\n",
            "transcryptors[0]: 'nowhere' is not host:port",
        ),
    ],
)
def test_node_sections_name_the_bad_key(config_dir: Path, extra: str, message: str) -> None:
    (config_dir / "node.toml").write_text(MINIMAL + extra)
    assert message in _error(config_dir / "node.toml")
