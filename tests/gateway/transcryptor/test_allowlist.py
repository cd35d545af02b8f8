"""The allow-list: default deny, patterns, Y and @caller, and a broken file denies all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certs.identity import PeerKind, make_identity
from gateway.errors import DeniedError
from gateway.transcryptor.allowlist import AllowList, AllowListError, AllowListFile

OIN = "00000001823288444000"
RR = make_identity(PeerKind.NODE, node_id="zvh-rr", oin=OIN)
HL = make_identity(PeerKind.NODE, node_id="zvh-hl", oin=OIN)
POLICE = make_identity(
    PeerKind.PARTNER, node_id="zvh-rr", org_id="politie-rr", org_type="politie", oin=OIN
)

TEXT = """
[enrol]
callers = ["schakel://node/*"]

[[allow]]
id = "rr"
callers = ["schakel://node/zvh-rr"]
from = ["Y", "@caller"]
to = ["politie-*", "@caller", "zvh-hl"]
activities = ["zvh.*"]
"""


def allow(text: str = TEXT) -> AllowList:
    import tomllib  # noqa: PLC0415

    return AllowList.parse(tomllib.loads(text), "allow.toml")


def test_pairs_patterns_and_the_callers_own_domain() -> None:
    rules = allow()
    assert rules.decide(RR, "zvh.x", [("Y", "politie-rr"), ("zvh-rr", "zvh-hl")]) == ["rr"]
    assert rules.decide(RR, "zvh.x", [("Y", "zvh-rr")]) == ["rr"]
    refusals = [
        (RR, "zvh.x", ("zvh-hl", "politie-rr")),  # another node's domain as source
        (RR, "zvh.x", ("Y", "ggz-rr")),  # a target no rule names
        (RR, "signalen", ("Y", "politie-rr")),  # another activity
        (HL, "zvh.x", ("Y", "politie-rr")),  # another caller
        (HL, "zvh.x", ("Y", "zvh-hl")),  # @caller is the caller's, and HL has no rule
    ]
    for caller, activity, pair in refusals:
        with pytest.raises(DeniedError):
            rules.decide(caller, activity, [pair])
    with pytest.raises(DeniedError, match="from 'Y' to 'ggz-rr'"):
        rules.decide(RR, "zvh.x", [("Y", "politie-rr"), ("Y", "ggz-rr")])


def test_y_is_not_a_domain_pattern() -> None:
    rules = allow(TEXT.replace('"politie-*", ', '"*", '))
    with pytest.raises(DeniedError):
        rules.decide(RR, "zvh.x", [("Y", "Y")])


def test_enrolment_is_for_listed_domains_only() -> None:
    rules = allow()
    assert rules.may_enrol(RR)
    assert not rules.may_enrol(POLICE)
    assert not allow("").may_enrol(RR)
    with pytest.raises(DeniedError):
        allow("").decide(RR, "zvh.x", [("Y", "politie-rr")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[allow]]\nid = 'x'\n", "needs exactly the keys"),
        ("[other]\n", "unknown key 'other'"),
        (TEXT.replace('activities = ["zvh.*"]', "activities = []\nx = 1"), "needs exactly"),
        (TEXT + TEXT.split("[[allow]]")[1].join(["[[allow]]", ""]), "used once"),
    ],
)
def test_a_bad_file_is_named(text: str, message: str) -> None:
    with pytest.raises(AllowListError, match=message):
        allow(text)


def test_a_broken_edit_denies_everything_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "allow.toml"
    path.write_text(TEXT)
    watched = AllowListFile(path)
    assert watched.current().decide(RR, "zvh.x", [("Y", "politie-rr")])
    path.write_text(TEXT + "[[allow]\n")
    os.utime(path, ns=(1, 1))
    with pytest.raises(DeniedError, match="unusable"):
        watched.current()
    path.write_text(TEXT.replace("politie-*", "ggz-*"))
    assert watched.current().decide(RR, "zvh.x", [("Y", "ggz-rr")])
