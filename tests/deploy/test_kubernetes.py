"""deploy/kubernetes: every manifest validates against the Kubernetes schemas, offline.

kubernetes-validate ships the JSON schemas of each Kubernetes release in
its package, so this needs no cluster and no network. Beyond the schema,
the node's Deployment is checked for what the deployment guide promises:
probes on the admin port, keys and certificates from Secrets, non-root with
a read-only root file system, and a node.toml the node accepts.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import NodeConfig

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
VERSION = "1.30.0"
"""The oldest Kubernetes release still supported upstream when this was written."""


def resources() -> list[dict[str, Any]]:
    """Every resource the kustomization lists, in its order."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    found: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        found += [r for r in yaml.safe_load_all((MANIFESTS / name).read_text()) if r]
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def test_every_manifest_is_listed_and_validates_strictly() -> None:
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    kinds = []
    for resource in resources():
        kubernetes_validate.validate(resource, VERSION, strict=True)
        kinds.append(resource["kind"])
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"} <= set(kinds)


def test_the_validator_refuses_a_broken_manifest() -> None:
    broken = one("Deployment", "schakel-node")
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)
    broken = one("Deployment", "schakel-node")
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_the_node_probes_its_admin_port_and_reads_keys_from_secrets() -> None:
    deployment = one("Deployment", "schakel-node")
    pod = deployment["spec"]["template"]["spec"]
    (node,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert node["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert node["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {"name": "admin", "containerPort": 9464, "protocol": "TCP"} in node["ports"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"schakel-tls", "schakel-keys", "schakel-pep"}
    assert node["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "schakel-database"
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in [*pod["initContainers"], node]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def _check_keys(cls: type[Any], table: dict[str, Any], where: str) -> None:
    """Every key of ``table`` is a field of the config dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key, value in table.items():
        assert key in names, f"{where}{key} is not a node.toml key"
        target = hints[key]
        args = typing.get_args(target)
        inner = args[0] if typing.get_origin(target) is list else target
        if dataclasses.is_dataclass(inner):
            for item in value if isinstance(value, list) else [value]:
                _check_keys(typing.cast(type[Any], inner), item, f"{where}{key}.")


def test_the_config_map_holds_a_node_toml_with_known_keys_only() -> None:
    text = one("ConfigMap", "schakel-config")["data"]["node.toml"]
    config = tomllib.loads(text)
    _check_keys(NodeConfig, config, "")
    assert config["admin"]["listen"] == "0.0.0.0:9464"
    mounts = {
        m["mountPath"]
        for m in one("Deployment", "schakel-node")["spec"]["template"]["spec"]["containers"][0][
            "volumeMounts"
        ]
    }
    for section in ("tls", "pseudonyms", "policy", "audit", "cases", "federation"):
        for key, value in config[section].items():
            if isinstance(value, str) and value.startswith("/"):
                assert str(Path(value).parent) in mounts, f"{section}.{key}: {value} is not mounted"
