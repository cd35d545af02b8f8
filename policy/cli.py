"""``schakel policy``: validate, test, explain, diff, keygen and sign bundles.

Exit codes: 0 success; 1 a finding (invalid bundle, failing case, changed
decisions for ``diff``); 2 a usage problem such as an unreadable key.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from policy.cases import CASES_FILE, load_cases, run_cases
from policy.compiler import CompiledPolicy, compile_bundle
from policy.evaluator import CategoryResult, Evaluator, Request
from policy.loader import load_bundle
from policy.model import Ground, PolicyError
from policy.signing import (
    generate_key,
    load_public_key,
    read_signed,
    sign_bundle,
    signature_path,
)
from policy.yamlread import PolicyLoadError

OK, FINDING, USAGE = 0, 1, 2


_BASELINE = "policy/bundles/baseline/bundle.yaml"


def register(sub: Any) -> None:
    """Add the ``policy`` area to the ``schakel`` command."""
    parser = sub.add_parser(
        "policy",
        help="policy bundles: validate, test, explain, diff, sign",
        description="Work on signed policy bundles. Exit codes: 0 success, 1 a finding "
        "(invalid bundle, failing case, changed decisions), 2 a usage problem.",
    )
    cmds = parser.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    p = cmds.add_parser(
        "validate",
        help="check a bundle's schema, references and signature",
        description="Load and compile a bundle: schema, references between activities, "
        "categories and rules; with --key also check BUNDLE.sig. Warnings go to stderr.",
        epilog=f"""examples:
  schakel policy validate {_BASELINE}
  schakel policy validate /etc/schakel/policy/bundle.yaml --key /etc/schakel/policy/policy.pub""",
    )
    p.add_argument("bundle", type=Path, help="the bundle YAML")
    p.add_argument("--key", type=Path, help="public policy key: also verify BUNDLE.sig")
    p.set_defaults(func=cmd_validate)

    p = cmds.add_parser(
        "test",
        help="run the table-driven cases kept next to a bundle",
        description="Run every case of the cases file against the bundle and print PASS or "
        "FAIL per case; exit 1 when any fails.",
        epilog=f"""examples:
  schakel policy test {_BASELINE}
  schakel policy test bundle.yaml --cases regional-cases.yaml""",
    )
    p.add_argument("bundle", type=Path, help="the bundle YAML")
    p.add_argument("--cases", type=Path, help=f"cases file (default: {CASES_FILE} beside BUNDLE)")
    p.set_defaults(func=cmd_test)

    p = cmds.add_parser(
        "explain",
        help="show which rules decide a request, or why none do",
        description="Decide one request as a node would and print, per category, the rule "
        "that releases it with its minimisation plan, or why no rule does.",
        epilog=f"""examples:
  schakel policy explain {_BASELINE} --activity zvh.complexe-casuistiek \\
      --phase casusoverleg --provider ggz --recipient gemeente --category zorg.in_zorg \\
      --case-accepted --ground zorg.in_zorg=consent""",
    )
    p.add_argument("bundle", type=Path, help="the bundle YAML")
    p.add_argument(
        "--activity", required=True, help="processing activity id, e.g. zvh.complexe-casuistiek"
    )
    p.add_argument("--phase", required=True, help="aanmelding, triage, casusoverleg or afschaling")
    p.add_argument("--provider", required=True, help="provider organisation type, e.g. politie")
    p.add_argument(
        "--recipient", required=True, help="recipient organisation type, or zvh with --role"
    )
    p.add_argument("--role", action="append", default=[], help="recipient role (repeatable)")
    p.add_argument(
        "--category", action="append", required=True, help="category asked for (repeatable)"
    )
    p.add_argument("--case-accepted", action="store_true", help="the case passed triage")
    p.add_argument(
        "--ground",
        action="append",
        default=[],
        metavar="CATEGORY=GROUND",
        help="a recorded ground, e.g. zorg.in_zorg=consent (repeatable)",
    )
    p.set_defaults(func=cmd_explain)

    p = cmds.add_parser(
        "diff",
        help="list the decisions that change between two bundles",
        description="Decide every request of the grid (activities x phases x providers x "
        "recipients x categories x conditions) under both bundles and list each decision "
        "that changes; exit 1 when any does, like diff(1).",
        epilog="""examples:
  schakel policy diff /etc/schakel/policy/bundle.yaml new/bundle.yaml""",
    )
    p.add_argument("old", type=Path, help="the bundle in force")
    p.add_argument("new", type=Path, help="the bundle to compare with it")
    p.set_defaults(func=cmd_diff)

    p = cmds.add_parser(
        "keygen",
        help="create a policy signing key (and KEY.pub)",
        description="Create an Ed25519 policy signing key (0600) and its public key KEY.pub, "
        "which every node pins as [policy] public_key. Keep the private key off the nodes.",
        epilog="""examples:
  schakel policy keygen ~/policy-signing/policy.key""",
    )
    p.add_argument("key", type=Path, help="the private key file to create")
    p.set_defaults(func=cmd_keygen)

    p = cmds.add_parser(
        "sign",
        help="sign a bundle: writes BUNDLE.sig",
        description="Validate a bundle, then sign it: writes BUNDLE.sig beside it. A node "
        "takes a newly signed bundle up within [policy] reload_seconds.",
        epilog="""examples:
  schakel policy sign bundle.yaml --key ~/policy-signing/policy.key""",
    )
    p.add_argument("bundle", type=Path, help="the bundle YAML")
    p.add_argument("--key", type=Path, required=True, help="private policy key")
    p.set_defaults(func=cmd_sign)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _compile(path: Path) -> CompiledPolicy | None:
    try:
        return compile_bundle(load_bundle(path))
    except PolicyLoadError as exc:
        for problem in exc.problems:
            _err(str(problem))
        _err(f"{path}: invalid ({len(exc.problems)} problem(s))")
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a bundle, and its signature when a key is given."""
    policy = _compile(args.bundle)
    if policy is None:
        return FINDING
    for warning in policy.warnings:
        _err(f"warning: {warning}")
    bundle = policy.bundle
    signed = ""
    if args.key is not None:
        try:
            key = load_public_key(args.key)
        except PolicyError as exc:
            _err(str(exc))
            return USAGE
        try:
            read_signed(args.bundle, key)
        except PolicyError as exc:
            _err(f"{args.bundle}: {exc}")
            return FINDING
        signed = f", signature {signature_path(args.bundle).name} verified"
    print(
        f"{args.bundle}: valid: {bundle.name} {bundle.version}, {len(bundle.activities)} "
        f"activities, {len(bundle.categories)} categories, {len(bundle.rules)} rules{signed}"
    )
    print(f"sha256 {bundle.sha256}")
    return OK


def cmd_test(args: argparse.Namespace) -> int:
    """Run a bundle's cases; exit 1 when any fails."""
    policy = _compile(args.bundle)
    if policy is None:
        return FINDING
    cases_path = args.cases or args.bundle.parent / CASES_FILE
    try:
        cases = load_cases(cases_path)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            _err(str(problem))
        return FINDING
    results = run_cases(Evaluator(policy), cases)
    for result in results:
        mark = "PASS" if result.passed else "FAIL"
        print(f"{mark} {cases_path}:{result.case.line} {result.case.name}")
        for mismatch in result.mismatches:
            print(f"     {mismatch}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return FINDING if failed else OK


def _parse_grounds(items: list[str]) -> frozenset[tuple[str, str]] | None:
    known = [g.value for g in Ground]
    out = set()
    for item in items:
        category, sep, ground = item.partition("=")
        if not sep or not category or ground not in known:
            _err(f"--ground {item!r}: expected CATEGORY=GROUND with GROUND one of {known}")
            return None
        out.add((category, ground))
    return frozenset(out)


def cmd_explain(args: argparse.Namespace) -> int:
    """Print the decision for one request with its reasons."""
    grounds = _parse_grounds(args.ground)
    if grounds is None:
        return USAGE
    try:
        request = Request(
            activity=args.activity,
            phase=args.phase,
            provider=args.provider,
            recipient=args.recipient,
            categories=tuple(args.category),
            roles=frozenset(args.role),
            case_accepted=args.case_accepted,
            grounds=grounds,
        )
    except PolicyError as exc:
        _err(str(exc))
        return USAGE
    policy = _compile(args.bundle)
    if policy is None:
        return FINDING
    for line in Evaluator(policy).explain(request):
        print(line)
    return OK


def grid(old: CompiledPolicy, new: CompiledPolicy) -> Iterator[Request]:
    """Every single-category request over the union of both bundles' vocabularies.

    Each is asked with the case accepted or not, times no ground or one of
    each ground recorded for the category.
    """
    a, b = old.bundle, new.bundle
    activities = sorted({*a.activities, *b.activities})
    phases = sorted({*a.phases, *b.phases})
    org_types = sorted({*a.org_types, *b.org_types})
    roles = sorted({*a.roles, *b.roles})
    categories = sorted({*a.categories, *b.categories})
    recipients = [(t, frozenset[str]()) for t in org_types]
    recipients += [("zvh", frozenset({role})) for role in roles]
    conditions = [
        (category, accepted, grounds)
        for category in categories
        for accepted in (False, True)
        for grounds in [frozenset(), *(frozenset({(category, g.value)}) for g in Ground)]
    ]
    for activity, phase, provider, (recipient, rroles), (
        category,
        accepted,
        grounds,
    ) in itertools.product(activities, phases, org_types, recipients, conditions):
        yield Request(
            activity=activity,
            phase=phase,
            provider=provider,
            recipient=recipient,
            categories=(category,),
            roles=rroles,
            case_accepted=accepted,
            grounds=grounds,
        )


def _describe(result: CategoryResult) -> str:
    if not result.released:
        return f"withheld ({result.reason})"
    assert result.plan is not None
    kept = ", ".join(f"{f}:{how}" for f, how in result.plan.describe().items() if how != "drop")
    return f"released by {result.rule_id} [{'+'.join(result.legal_basis)}] {{{kept}}}"


def cmd_diff(args: argparse.Namespace) -> int:
    """Print every grid decision that differs; exit 1 when any does (like diff(1))."""
    old = _compile(args.old)
    new = _compile(args.new)
    if old is None or new is None:
        return USAGE
    before, after = Evaluator(old), Evaluator(new)
    # Results are mostly shared objects from the evaluators' tables: describe
    # each once. The memo holds the object too, so its id cannot be reused.
    described: dict[int, tuple[CategoryResult, str]] = {}

    def describe(result: CategoryResult) -> str:
        hit = described.get(id(result))
        if hit is None:
            hit = described[id(result)] = (result, _describe(result))
        return hit[1]

    changed = total = 0
    for request in grid(old, new):
        total += 1
        x = describe(before.results(request)[0])
        y = describe(after.results(request)[0])
        if x == y:
            continue
        changed += 1
        who = request.recipient + "".join(f"+{r}" for r in sorted(request.roles))
        conditions = ["accepted" if request.case_accepted else "not-accepted"]
        conditions += sorted(g for _, g in request.grounds)
        print(
            f"{request.activity} {request.phase} {request.provider}->{who} "
            f"{request.categories[0]} [{','.join(conditions)}]:\n    - {x}\n    + {y}"
        )
    print(f"{changed} of {total} decisions change")
    return FINDING if changed else OK


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a policy key pair."""
    try:
        pub = generate_key(args.key)
    except PolicyError as exc:
        _err(str(exc))
        return USAGE
    print(f"private key {args.key} (keep it off the node), public key {pub}")
    return OK


def cmd_sign(args: argparse.Namespace) -> int:
    """Validate, then sign a bundle."""
    if _compile(args.bundle) is None:
        _err("refusing to sign an invalid bundle")
        return FINDING
    try:
        sig = sign_bundle(args.bundle, args.key)
    except PolicyError as exc:
        _err(str(exc))
        return USAGE
    print(f"signed {args.bundle}: {sig}")
    return OK


def main(argv: list[str] | None = None) -> int:
    """Run ``schakel policy ...`` on its own (``python -m policy.cli validate ...``)."""
    parser = argparse.ArgumentParser(prog="schakel")
    register(parser.add_subparsers(dest="area", required=True, metavar="AREA"))
    args = parser.parse_args(["policy", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
