"""``schakel signals``: the national collector's commands.

``schakel signals collect`` asks every node in a directory file for its
aggregate signals over a period (or per month), then writes signals.csv and
signals.html. Exit code 0 when at least one node answered and the report was
written, 1 when none did, 2 for unusable arguments or files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.collector.collect import Period, collect, split_periods
from gateway.collector.directory import DirectoryError, DirectoryNode, load_directory
from gateway.collector.report import write_report
from gateway.federation.directory import load_directory as load_signed_directory
from gateway.federation.directory import load_directory_key
from gateway.tls import channel_credentials

EXIT_NONE_ANSWERED = 1
EXIT_USAGE = 2


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, not {text!r}") from None


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 600, not {text!r}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``signals`` area to the ``schakel`` command; returns its parser."""
    signals: argparse.ArgumentParser = subparsers.add_parser(
        "signals",
        help="national aggregate signalling (collector)",
        description="The national collector's commands: aggregate counts, never personal data.",
    )
    sub = signals.add_subparsers(dest="signals_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "collect",
        help="ask every node for its signals and write signals.csv and signals.html",
        description="Ask every node of a directory for its aggregate signals (cases per "
        "theme, phase, outcome and bottleneck, small cells suppressed) over a period, then "
        "write signals.csv and signals.html into --out. Dates are YYYY-MM-DD (UTC days); "
        "the period runs from --from up to, not including, --to. Exit codes: 0 a report was "
        "written, 1 no node answered, 2 unusable arguments or files.",
        epilog="""examples:
  schakel signals collect --directory nodes.toml --cert collector.pem --key collector.key \\
      --ca ca.pem --from 2026-01-01 --to 2026-04-01 --periods monthly --out report/
  schakel signals collect --directory directory.yaml --directory-key directory.pub \\
      --cert collector.pem --key collector.key --ca ca.pem \\
      --from 2026-01-01 --to 2027-01-01 --out report-2026/""",
    )
    run.add_argument(
        "--directory",
        type=Path,
        required=True,
        help="nodes file (.toml/.yaml: id, address, region per node)",
    )
    run.add_argument(
        "--directory-key",
        type=Path,
        help="federation directory key (.pub): read --directory as the signed federation directory",
    )
    run.add_argument("--cert", type=Path, required=True, help="the collector certificate")
    run.add_argument("--key", type=Path, required=True, help="its private key")
    run.add_argument("--ca", type=Path, required=True, help="the federation CA certificate")
    run.add_argument(
        "--from",
        dest="start",
        type=_date,
        required=True,
        metavar="DATE",
        help="first day, YYYY-MM-DD (inclusive)",
    )
    run.add_argument(
        "--to",
        dest="end",
        type=_date,
        required=True,
        metavar="DATE",
        help="the day after the last, YYYY-MM-DD (exclusive)",
    )
    run.add_argument("--out", type=Path, required=True, help="directory for the report")
    run.add_argument(
        "--timeout", type=_timeout, default=10.0, help="seconds per call (default 10, max 600)"
    )
    run.add_argument(
        "--periods",
        choices=("whole", "monthly"),
        default="whole",
        help="one period, or one per calendar month",
    )
    run.set_defaults(func=_collect)
    return signals


def _nodes(path: Path, key: Path | None) -> list[DirectoryNode]:
    """The nodes of an unsigned nodes file, or of the signed directory when ``key`` is given."""
    if key is None:
        return load_directory(path)
    signed = load_signed_directory(path, load_directory_key(key))
    return [DirectoryNode(p.node_id, p.address, p.region or p.node_id) for p in signed.peers]


def _collect(args: argparse.Namespace) -> int:
    try:
        periods = split_periods(args.start, args.end, monthly=args.periods == "monthly")
        nodes = _nodes(args.directory, args.directory_key)
        credentials = channel_credentials(args.ca, args.cert, args.key)
    except (ValueError, DirectoryError) as exc:
        print(f"schakel signals collect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"schakel signals collect: cannot read the TLS files: {exc}", file=sys.stderr)
        return EXIT_USAGE
    overall = Period(periods[0].start, periods[-1].end) if len(periods) > 1 else None
    collection = asyncio.run(
        collect(nodes, credentials, periods, timeout=args.timeout, overall=overall)
    )
    answered = collection.answered
    print(
        f"asked {len(nodes)} node(s) for {len(periods)} period(s): "
        f"{len(answered)} answered, {len(collection.silent)} did not answer every period",
        file=sys.stderr,
    )
    for failure in collection.failures:
        print(
            f"  not answered: {failure.node.node_id} for {failure.period.label}: {failure.reason}",
            file=sys.stderr,
        )
    if not answered:
        print("no node answered; no report written", file=sys.stderr)
        return EXIT_NONE_ANSWERED
    try:
        csv_path, html_path = write_report(collection, args.out)
    except OSError as exc:
        print(f"schakel signals collect: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_NONE_ANSWERED
    print(f"wrote {csv_path} and {html_path}", file=sys.stderr)
    return 0
