"""Loading bundles: every error names the file, the line and what is wrong."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from policy.compiler import compile_bundle
from policy.loader import load_bundle, load_bundle_bytes
from policy.yamlread import PolicyLoadError
from tests.support.policy import BASELINE, SMALL, small


def _problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyLoadError) as info:
        load_bundle_bytes(text.encode(), "bad.yaml")
    assert str(info.value).startswith("bad.yaml:")
    return [(p.line, p.message) for p in info.value.problems]


def _line_of(text: str, needle: str, start: int = 0) -> int:
    return text[: text.index(needle, start)].count("\n") + 1


# (text to replace in SMALL, replacement, text on the expected line, expected message)
BROKEN = [
    ("schema: schakel.policy/v1", "schema: schakel.policy/v9", "schema:", "not supported"),
    ('version: "1"', "version: 1", "version:", "must be a string, not a int (quote it"),
    ("phases: [aanmelding,", "phases: [nazorg, aanmelding,", "phases:", "unknown phase 'nazorg'"),
    ("org_types: [politie,", "org_types: [bank, politie,", "org_types:", "unknown org type 'bank'"),
    ("roles: [procesregisseur]", "roles: [baas]", "roles:", "unknown role 'baas'"),
    ("    legal_bases: [WGS, AVG-6.1e]", "    legal_bases: [WGS, Wiv]", "Wiv", "'Wiv'"),
    ("    uri: urn:test:act.one", "    uri: act-one", "uri: act-one", "absolute URI"),
    (
        "    retention: {facts_days: 30,",
        "    retention: {facts_days: -1,",
        "retention:",
        "facts_days of activity 'act.one' must be at least 0",
    ),
    ("    sensitivity: regular", "    sensitivity: secret", "sensitivity: secret", "'secret'"),
    ("      count: number", "      count: integer", "count:", "type 'integer' of field 'count'"),
    ("      flag: bool", "      flag: {type: bool, values: [x]}", "flag:", "not of type 'code'"),
    ("  - id: r-health-unconditional", "  - id: r-regular", "id: r-regular", "used twice"),
    (
        "    activity: act.one\n    phases: [casusoverleg]\n    providers: [politie]",
        "    activity: act.two\n    phases: [casusoverleg]\n    providers: [politie]",
        "activity: act",
        "activity 'act.two' is not declared",
    ),
    ("    providers: [politie]", "    providers: [bank]", "providers: [bank]", "'bank'"),
    (
        "    recipients: [gemeente]\n    categories: [regular",
        "    recipients: [fg]\n    categories: [regular",
        "recipients: [fg]",
        "'fg'",
    ),
    ("    categories: [regular.cat]", "    categories: [nope]", "categories: [nope]", "'nope'"),
    ("    legal_basis: WGS", "    legal_basis: Wpg", "legal_basis: Wpg", "'Wpg'"),
    (
        "    legal_basis: WGS",
        "    legal_basis: WGS\n    conditions: [vibes]",
        "conditions:",
        "'vibes' is unknown",
    ),
    ("    legal_basis: WGS", "    legal_basis: WGS\n    grounds: [hunch]", "grounds:", "'hunch'"),
    (
        "    legal_basis: WGS",
        "    legal_basis: WGS\n    retention_days: 31",
        "retention_days",
        "exceeds activity 'act.one'",
    ),
    (
        "    legal_basis: WGS",
        "    legal_basis: WGS\n    colour: red",
        "colour",
        "unknown key 'colour'",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {bsn: keep}",
        "{bsn",
        "no field 'bsn'",
    ),
    (
        "      regular.cat: {status: keep}",
        "      health.cat: {in_care: keep}",
        "health.cat: {in",
        "not in its categories",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {status: band}",
        "{status: band",
        "'band' needs its edges",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {status: blur}",
        "{status: blur",
        "transform 'blur' is unknown",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {when: {band: [0, 1]}}",
        "{when:",
        "'band' does not apply to regular.cat.when of type 'date'",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {count: {band: [3, 1]}}",
        "{count:",
        "strictly increasing",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {contact: keep}",
        "{contact:",
        "'keep' does not apply",
    ),
    (
        "      regular.cat: {status: keep}",
        "      regular.cat: {status: keep, status: drop}",
        "{status: keep, status",
        "duplicate key 'status'",
    ),
    (
        "      status: {type: code, values: [a, b]}",
        "      status: {type: code, values_from: colours}",
        "values_from",
        "must name one of",
    ),
    ("rules:\n", "rules:\n  - 42\n", "- 42", "a rule must be a mapping"),
]


@pytest.mark.parametrize(("old", "new", "where", "message"), BROKEN)
def test_each_error_has_its_line_and_says_what_is_wrong(
    old: str, new: str, where: str, message: str
) -> None:
    assert old in SMALL
    text = SMALL.replace(old, new, 1)
    problems = _problems(text)
    line = _line_of(text, where, SMALL.index(old))
    assert any(ln == line and message in msg for ln, msg in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    text = SMALL.replace("    providers: [politie]", "    providers: [bank]").replace(
        "      count: number", "      count: integer"
    )
    problems = _problems(text)
    assert len(problems) >= 2
    assert [ln for ln, _ in problems] == sorted(ln for ln, _ in problems)


def test_missing_top_level_keys_are_named() -> None:
    text = SMALL.replace("name: small\n", "")
    assert (1, "the bundle is missing the required key 'name'") in _problems(text)


def test_yaml_syntax_errors_have_a_position() -> None:
    text = SMALL.replace("  WGS: collaboration act", "  WGS: [unclosed")
    ((line, message),) = _problems(text)
    assert message.startswith("YAML syntax:")
    assert line >= _line_of(text, "[unclosed")


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "the file is empty"), (b"\xff\xfe", "not UTF-8"), (b"- a\n- b\n", "must be a mapping")],
)
def test_unusable_files(data: bytes, message: str) -> None:
    with pytest.raises(PolicyLoadError, match=message):
        load_bundle_bytes(data, "bad.yaml")


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="cannot read the bundle"):
        load_bundle(tmp_path / "absent.yaml")


def test_extension_keys_hold_anchors_and_are_ignored() -> None:
    text = SMALL.replace("rules:\n", "x-who: &who [gemeente]\nrules:\n").replace(
        "    recipients: [gemeente]\n    categories: [regular",
        "    recipients: *who\n    categories: [regular",
    )
    bundle = load_bundle_bytes(text.encode(), "ok.yaml")
    assert bundle.rules[0].recipients == ("gemeente",)


def test_rules_may_not_serve_an_activity_without_personal_data() -> None:
    retention = "    retention: {facts_days: 30, links_days: 30, audit_days: 90}\n"
    text = SMALL.replace(retention, retention + "    personal_data: false\n")
    assert any("personal_data: false" in m for _, m in _problems(text))


def test_the_baseline_loads_with_its_hash_and_no_warnings() -> None:
    bundle = load_bundle(BASELINE)
    assert bundle.sha256 == hashlib.sha256(BASELINE.read_bytes()).hexdigest()
    assert set(bundle.phases) == {"aanmelding", "triage", "casusoverleg", "afschaling"}
    assert {
        "bekend",
        "justitie.antecedenten",
        "justitie.toezicht",
        "detentie",
        "zorg.in_zorg",
        "zorg.crisismaatregel",
        "sociaal.huisvesting",
        "sociaal.inkomen_schulden",
        "sociaal.wmo_jeugd",
        "veiligheid.risico",
        "veiligheid.huiselijk_geweld",
    } <= set(bundle.categories)
    assert {"WGS", "AVG-6.1e", "Wpg", "Wjsg", "toestemming", "conflict-van-plichten"} <= set(
        bundle.legal_bases
    )
    assert {
        "zvh.complexe-casuistiek",
        "zvh.nazorg-ex-gedetineerden",
        "zvh.huiselijk-geweld",
        "zvh.signalering",
    } <= set(bundle.activities)
    assert "huisvesting" in bundle.bottlenecks and "doelen-bereikt" in bundle.outcomes
    assert compile_bundle(bundle).warnings == ()


def test_a_rule_that_keeps_no_field_is_flagged() -> None:
    text = SMALL.replace("    minimise:\n      regular.cat: {status: keep}\n", "")
    warnings = small(text).policy.warnings
    assert any("'r-regular' releases 'regular.cat' but keeps none" in w for w in warnings)
    assert not any("keeps none" in w for w in small().policy.warnings)
