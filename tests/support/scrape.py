"""Reading a node's admin port over HTTP, as Prometheus and a kubelet do."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of GET ``path`` on the loopback admin ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def samples(port: int) -> dict[str, list[Sample]]:
    """Every sample of ``/metrics``, by metric family name."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {family.name: family.samples for family in text_string_to_metric_families(body)}


def total(found: dict[str, list[Sample]], family: str, suffix: str = "", **labels: str) -> float:
    """The sum of ``family``'s samples named ``family + suffix`` whose labels include ``labels``."""
    return sum(
        s.value
        for s in found.get(family, [])
        if s.name == family + suffix and labels.items() <= s.labels.items()
    )
