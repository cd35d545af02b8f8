"""``schakel policy validate|test|explain|diff|keygen|sign``: output and exit codes."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from policy.cli import main, register
from tests.support.policy import BASELINE, SMALL

EXPLAIN = [
    "--activity",
    "zvh.complexe-casuistiek",
    "--phase",
    "casusoverleg",
    "--provider",
    "ggz",
    "--recipient",
    "gemeente",
    "--case-accepted",
    "--category",
    "zorg.in_zorg",
    "--category",
    "zorg.crisismaatregel",
    "--category",
    "justitie.antecedenten",
]


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def baseline_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "baseline"
    shutil.copytree(BASELINE.parent, folder)
    return folder / "bundle.yaml"


def test_validate_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "validate", BASELINE)
    assert code == 0, err
    assert "valid: zvh-baseline" in out and "sha256 " in out


def test_validate_reports_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL.replace("    providers: [politie]", "    providers: [bank]"))
    code, _out, err = _run(capsys, "validate", path)
    assert code == 1
    line = SMALL[: SMALL.index("    providers: [politie]")].count("\n") + 1
    assert f"{path}:{line}:" in err and "'bank'" in err


def test_validate_warns_about_an_art9_rule_without_grounds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    code, _out, err = _run(capsys, "validate", path)
    assert code == 0
    assert "warning:" in err and "r-health-unconditional" in err


def test_keygen_sign_and_validate_with_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, baseline_copy: Path
) -> None:
    key = tmp_path / "policy.key"
    assert _run(capsys, "keygen", key)[0] == 0
    assert _run(capsys, "keygen", key)[0] == 2
    pub = tmp_path / "policy.key.pub"
    code, _out, err = _run(capsys, "validate", baseline_copy, "--key", pub)
    assert code == 1 and "unsigned" in err
    assert _run(capsys, "sign", baseline_copy, "--key", key)[0] == 0
    code, out, _err = _run(capsys, "validate", baseline_copy, "--key", pub)
    assert code == 0 and "signature bundle.yaml.sig verified" in out
    baseline_copy.write_bytes(baseline_copy.read_bytes() + b"\n# changed\n")
    code, _out, err = _run(capsys, "validate", baseline_copy, "--key", pub)
    assert code == 1 and "does not match" in err
    assert _run(capsys, "validate", baseline_copy, "--key", tmp_path / "absent.pub")[0] == 2


def test_sign_refuses_an_invalid_bundle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = tmp_path / "policy.key"
    _run(capsys, "keygen", key)
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL.replace("    providers: [politie]", "    providers: [bank]"))
    code, _out, err = _run(capsys, "sign", path, "--key", key)
    assert code == 1 and "refusing to sign" in err
    assert not (tmp_path / "bad.yaml.sig").exists()


def test_test_runs_the_baseline_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = _run(capsys, "test", BASELINE)
    assert code == 0
    assert "PASS" in out and "FAIL" not in out
    assert out.strip().endswith("passed, 0 failed")


def test_test_fails_when_the_bundle_changes_a_decision(
    capsys: pytest.CaptureFixture[str], baseline_copy: Path
) -> None:
    text = baseline_copy.read_text()
    # Release police data to the housing corporation: a case forbids exactly that.
    text = text.replace(
        "  - &case_table [zvh, procesregisseur,",
        "  - &case_table [woningcorporatie, zvh, procesregisseur,",
    )
    baseline_copy.write_text(text)
    code, out, _err = _run(capsys, "test", baseline_copy)
    assert code == 1
    assert "FAIL" in out and "the housing corporation never receives criminal data" in out
    assert "outcome is allow, expected deny" in out
    assert "1 failed" in out


def test_test_reports_a_broken_cases_file(
    capsys: pytest.CaptureFixture[str], baseline_copy: Path
) -> None:
    cases = baseline_copy.parent / "cases.yaml"
    cases.write_text(cases.read_text().replace("outcome: allow", "outcome: maybe", 1))
    code, _out, err = _run(capsys, "test", baseline_copy)
    assert code == 1 and "outcome 'maybe' is unknown" in err and "cases.yaml:" in err


def test_explain_lists_rules_and_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = _run(
        capsys, "explain", BASELINE, *EXPLAIN, "--ground", "zorg.in_zorg=consent"
    )
    assert code == 0
    assert "outcome: partial" in out
    assert "zorg.in_zorg: released by rule 'cc-ggz-in-zorg' on ground consent" in out
    assert "sinds: coarsen-year" in out
    assert "zorg.crisismaatregel: withheld (art9-no-ground)" in out
    assert "rule 'cc-ggz-crisismaatregel'" in out
    assert "justitie.antecedenten: withheld (no-rule)" in out


def test_explain_says_which_phases_would_allow(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a if a != "casusoverleg" else "triage" for a in EXPLAIN]
    code, out, _err = _run(capsys, "explain", BASELINE, *argv, "--ground", "zorg.in_zorg=consent")
    assert code == 0
    assert "zorg.in_zorg: withheld (phase-not-allowed)" in out
    assert "only in phase(s): casusoverleg" in out


def test_explain_rejects_a_bad_ground(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(capsys, "explain", BASELINE, *EXPLAIN, "--ground", "zorg.in_zorg")
    assert code == 2 and "CATEGORY=GROUND" in err


def test_diff_of_a_bundle_with_itself_is_empty(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = _run(capsys, "diff", BASELINE, BASELINE)
    assert code == 0
    assert out.startswith("0 of ")


def test_diff_lists_the_changed_decisions(
    capsys: pytest.CaptureFixture[str], baseline_copy: Path
) -> None:
    text = baseline_copy.read_text().replace(
        "        aantal: {band: [0, 1, 3, 6]}\n        zwaarste_soort: keep\n"
        "        laatste_datum: coarsen-year\n",
        "        aantal: {band: [0, 1, 3, 6]}\n        zwaarste_soort: keep\n"
        "        laatste_datum: coarsen-month\n",
        1,
    )
    baseline_copy.write_text(text)
    code, out, _err = _run(capsys, "diff", BASELINE, baseline_copy)
    assert code == 1
    assert "zvh.complexe-casuistiek casusoverleg politie->gemeente justitie.antecedenten" in out
    assert "laatste_datum:coarsen-year" in out and "laatste_datum:coarsen-month" in out
    assert "veiligheid.risico" not in out
    # Grid recipients the rule serves: 9 org types, and zvh with either role (11),
    # times the 4 condition sets with the case accepted (no ground or one of 3).
    assert out.strip().splitlines()[-1] == "44 of 215040 decisions change"


def test_diff_of_an_invalid_bundle_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [")
    code, _out, err = _run(capsys, "diff", BASELINE, path)
    assert code == 2 and "YAML syntax" in err


def test_the_schakel_command_registers_the_policy_area() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="area"))
    args = parser.parse_args(["policy", "validate", str(BASELINE)])
    assert args.func.__name__ == "cmd_validate"
