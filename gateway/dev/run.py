"""``make run``: a dev federation of two nodes on SQLite, with a generated dev PKI.

Everything lives under ``.state/dev`` (git-ignored) and is reused on the
next run: a CA, two nodes with a node.toml each, partner, officer and
collector certificates, a chain of two transcryptors (tc-regio and
tc-landelijk, each with its own certificate, secrets, allow-list and audit
log, after a key ceremony), a domain key per organisation assembled from
their factors, a signed copy of the baseline policy bundle, and each node's
audit keys; the two nodes witness each other's checkpoints. The
transcryptors run as processes of their own; both nodes start in this
process, with simulated
partner systems on their task streams; a list of checks then shows over
mTLS that they serve and refuse as they should, and walks a case through
them. ``--once`` exits after the checks (0 only if all passed); otherwise
the nodes serve until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import grpc

from adapters.sdk import PartnerRpcError
from gateway.app import open_node
from gateway.config import ConfigError, load_config
from gateway.dev import chain, checks, walkthrough
from gateway.dev.federation import (
    DEV_PORTS,
    HAAGLANDEN,
    P12_PASSWORD,
    ROTTERDAM,
    Check,
    browser_certificate,
    free_port,
    prepare_pki,
    shut_down,
    start_partners,
    write_node_config,
)
from gateway.logging import configure_logging
from gateway.rpc.server import StartupError
from policy.vocabulary import FG, PROCESREGISSEUR

CHECKS: list[Check] = [
    *checks.SERVING,
    *walkthrough.STEPS,
    ("each transcryptor keeps its own audit log", chain.logged),
    *checks.AUDIT,
]
"""Steps shown by ``make run``, in order: serving, the walkthrough, the audit proofs."""


async def run(args: argparse.Namespace, out: TextIO) -> int:
    """Prepare, start, check and (unless ``--once``) serve; returns the exit code."""

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    root: Path = args.state_dir
    root.mkdir(parents=True, exist_ok=True)
    say(f"== dev PKI in {root}")
    fed = prepare_pki(root, say)
    log_path = root / "nodes.log"
    with log_path.open("a", encoding="utf-8") as log_file:
        configure_logging("info", stream=log_file)
        consoles = [f"console-{n}" for n in (ROTTERDAM, HAAGLANDEN)]
        ports = {
            name: free_port() if args.ports == "auto" else DEV_PORTS[name]
            for name in (ROTTERDAM, HAAGLANDEN, *fed.keys.transcryptors, *consoles)
        }
        try:
            say(f"== starting the transcryptor chain as processes (JSON logs in {log_path})")
            await chain.start_processes(fed, ports, log_path)
            for transcryptor, address in fed.transcryptors.items():
                say(f"   {transcryptor} listens on {address}")
            say(f"== starting nodes (JSON logs in {log_path})")
            for node_id in (ROTTERDAM, HAAGLANDEN):
                config = load_config(write_node_config(fed, node_id, ports), environ={})
                node = open_node(config)
                await node.start()
                fed.nodes[node_id] = node
                say(f"   {node_id} listens on {node.address} ({config.database_url})")
                if node.console is not None:
                    officers = ", ".join(
                        str(browser_certificate(fed, f"{node_id}-{role}"))
                        for role in (PROCESREGISSEUR, FG)
                    )
                    say(
                        # The dev node certificates name localhost, not 127.0.0.1.
                        f"   {node_id}'s console: "
                        f"{node.console.url.replace('127.0.0.1', 'localhost')} (import {officers} "
                        f"into the browser, password {P12_PASSWORD})"
                    )
        except (ConfigError, StartupError, RuntimeError) as exc:
            say(f"FAILED: {exc}")
            if args.ports != "auto":
                say("   another `make run`? stop it, or use `make run ARGS='--ports auto'`")
            await shut_down(fed)
            return 1
        say("== starting the simulated partner systems (data in " + str(root / "partners") + ")")
        try:
            await start_partners(fed, say)
        except (PartnerRpcError, RuntimeError, ValueError) as exc:
            say(f"FAILED: a simulated partner did not start: {exc}")
            await shut_down(fed)
            return 1
        say("== checks over mTLS")
        failures = 0
        for title, check in CHECKS:
            try:
                seen = await check(fed)
                say(f"   ok      {title}: {seen}")
            except (AssertionError, grpc.aio.AioRpcError, PartnerRpcError) as exc:
                failures += 1
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                say(f"   FAILED  {title}: {detail}")
        say(f"== {len(CHECKS) - failures} of {len(CHECKS)} checks passed")
        if not args.once and not failures:
            say(
                "== serving until Ctrl-C; node configs are in "
                + ", ".join(str(root / n / "node.toml") for n in fed.nodes)
            )
            await _until_interrupted()
        await shut_down(fed)
    return 1 if failures else 0


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``make run``."""
    parser = argparse.ArgumentParser(prog="make run ARGS=...", description=__doc__)
    parser.add_argument("--once", action="store_true", help="run the checks, then exit")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".state/dev"), help="default .state/dev"
    )
    parser.add_argument(
        "--ports",
        choices=["dev", "auto"],
        default="dev",
        help="dev: 7443 and 7444 (default); auto: any free ports",
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(args, out or sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
