"""``schakel transcryptor``: init, the key ceremony, offline enrolment, run.

::

    schakel transcryptor init --id tc-regio --state-dir state
    schakel transcryptor init --id tc-enige --state-dir state --from-single federation-keys.json
    schakel transcryptor ceremony --config transcryptor.toml [--previous ceremony.json] \
        --out ceremony.json
    schakel transcryptor ceremony --verify ceremony.json
    schakel transcryptor enrol politie-rr --config transcryptor.toml --out politie-rr.tc-regio.json
    schakel transcryptor run --config transcryptor.toml

Exit codes: 0 done, 1 the step failed (the message says why), 2 the
configuration is unusable (naming the key).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from gateway.logging import configure_logging
from gateway.tomlconfig import ConfigError

EXIT_FAILED = 1
EXIT_CONFIG = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``transcryptor`` area to the ``schakel`` command; returns its parser."""
    area: argparse.ArgumentParser = subparsers.add_parser(
        "transcryptor",
        help="run one transcryptor of the pseudonym chain",
        description="One transcryptor of the chain that converts pseudonyms between domains.",
    )
    sub = area.add_subparsers(dest="transcryptor_command", required=True, metavar="COMMAND")
    init = sub.add_parser(
        "init",
        help="make this transcryptor's secrets PS_i, RS_i and key share y_i (share.json, 0600)",
        description="Make this transcryptor's own secrets and key share in --state-dir. Each "
        "transcryptor of a chain is run by a different party; none ever sees another's share.",
        epilog="""examples:
  schakel transcryptor init --id tc-regio --state-dir /var/lib/schakel-tc
  schakel transcryptor init --id tc-regio --state-dir /var/lib/schakel-tc \\
      --passphrase-file /run/secrets/tc-share-passphrase
  schakel transcryptor init --id tc-regio --state-dir /var/lib/schakel-tc \\
      --from-single /secure/pep/federation-keys.json""",
    )
    init.add_argument("--id", required=True, help="the transcryptor id, as in its certificate")
    init.add_argument(
        "--state-dir", type=Path, required=True, help="its state directory (created 0700)"
    )
    init.add_argument(
        "--from-single",
        type=Path,
        help="take over a single-scheme key file: federation-keys.json (PS, RS and y) or a "
        "node's transcryptor.json (PS and RS only: then this transcryptor cannot enrol domains)",
    )
    init.add_argument(
        "--passphrase-file",
        type=Path,
        help="seal share.json with the passphrase on this file's first line (12+ characters); "
        "name the same file as transcryptor.share_passphrase_file in transcryptor.toml",
    )
    init.add_argument("--force", action="store_true", help="replace an existing share")
    init.set_defaults(func=_init)
    ceremony = sub.add_parser(
        "ceremony",
        help="take this transcryptor's step of the key ceremony: Y_i = y_i * Y_(i-1), with a "
        "proof; or --verify a finished transcript",
        description="The key ceremony builds the federation key Y without anyone holding y: "
        "each transcryptor in turn multiplies the previous public key by its share and adds a "
        "proof that it did; --verify checks every step of a finished transcript.",
        epilog="""examples:
  schakel transcryptor ceremony --config tc-regio.toml --out step1.json
  schakel transcryptor ceremony --config tc-landelijk.toml --previous step1.json --out y.json
  schakel transcryptor ceremony --verify y.json""",
    )
    ceremony.add_argument("--config", type=Path, help="this transcryptor's transcryptor.toml")
    ceremony.add_argument(
        "--previous", type=Path, help="the transcript so far (none: this is the first step)"
    )
    ceremony.add_argument("--out", type=Path, help="where to write the extended transcript")
    ceremony.add_argument("--verify", type=Path, help="check every step of a transcript")
    ceremony.set_defaults(func=_ceremony)
    enrol = sub.add_parser(
        "enrol",
        help="write a domain's factor k_(d,i) * y_i to a file, for offline enrolment",
        description="Write this transcryptor's factor of one domain's key, for the domain to "
        "multiply with the other transcryptors' factors (schakel certs pep assemble).",
        epilog="""examples:
  schakel transcryptor enrol politie-dh --config tc-regio.toml --out politie-dh.tc-regio.json
  schakel transcryptor enrol politie-dh --config tc-regio.toml --out politie-dh.tc-regio.json \\
      --passphrase-file /run/secrets/politie-dh-transfer""",
    )
    enrol.add_argument("domain", help="the organisation or node id")
    enrol.add_argument(
        "--config", type=Path, required=True, help="this transcryptor's transcryptor.toml"
    )
    enrol.add_argument("--out", type=Path, required=True, help="the factor file to write (0600)")
    enrol.add_argument(
        "--passphrase-file",
        type=Path,
        help="seal the factor file with the passphrase on this file's first line (12+ "
        "characters), agreed with the domain, so the file is safe on its way there",
    )
    enrol.add_argument("--force", action="store_true", help="replace an existing file")
    enrol.set_defaults(func=_enrol)
    run = sub.add_parser(
        "run",
        help="serve until SIGINT/SIGTERM",
        description="Serve TranscryptorService over mTLS: batched conversions for the nodes "
        "its allow-list names, each audited in its own Merkle log and rate-limited per caller.",
        epilog="""examples:
  schakel transcryptor run --config /etc/schakel/transcryptor.toml""",
    )
    run.add_argument("--config", type=Path, required=True, help="the transcryptor.toml")
    run.set_defaults(func=_run)
    return area


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"schakel transcryptor: {message}", file=sys.stderr)
    return code


def _init(args: argparse.Namespace) -> int:
    from policy.pseudonyms import (  # noqa: PLC0415 - keeps the parser light
        FederationKeys,
        KeyFileError,
        PseudonymError,
        TranscryptorKeys,
    )
    from policy.pseudonyms.ceremony import run_ceremony, taken_over  # noqa: PLC0415
    from policy.pseudonyms.shares import TranscryptorShare  # noqa: PLC0415

    state: Path = args.state_dir
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        if args.from_single is None:
            share = TranscryptorShare.generate(args.id)
        else:
            try:
                keys: FederationKeys | TranscryptorKeys = FederationKeys.load(args.from_single)
            except KeyFileError:
                keys = TranscryptorKeys.load(args.from_single)
            share = TranscryptorShare.from_single(args.id, keys)
            transcript = (
                run_ceremony([share])
                if share.key_share is not None
                else taken_over(keys.global_public_key)
            )
            if transcript.global_public_key != keys.global_public_key:
                return _fail(f"{args.from_single}: y and Y do not belong together")
            transcript.save(state / "ceremony.json")
        share.save(state / "share.json", force=args.force, passphrase_file=args.passphrase_file)
    except (KeyFileError, PseudonymError, OSError) as exc:
        return _fail(str(exc))
    sealed = ", sealed" if args.passphrase_file is not None else ""
    print(
        f"share of {share.transcryptor}: {state / 'share.json'} (mode 0600{sealed}, never copy it)"
    )
    if share.key_share is not None:
        print(f"public share U = y_i*G: {share.public_share.hex()}")
    if args.from_single is not None:
        print(f"federation key Y (unchanged): {keys.global_public_key.hex()}")
        print(f"transcript: {state / 'ceremony.json'}")
    else:
        print("next: this transcryptor's step of the key ceremony (schakel transcryptor ceremony)")
    return 0


def _ceremony(args: argparse.Namespace) -> int:
    from gateway.transcryptor.server import own_share  # noqa: PLC0415
    from policy.pseudonyms import KeyFileError, PseudonymError  # noqa: PLC0415
    from policy.pseudonyms.ceremony import Transcript  # noqa: PLC0415

    try:
        if args.verify is not None:
            transcript = Transcript.load(args.verify)
            for i, step in enumerate(transcript.steps, start=1):
                print(f"step {i}: {step.transcryptor}: Y_{i} = {step.result.hex()} (proof holds)")
            print(f"federation key Y = {transcript.global_public_key.hex()}")
            return 0
        if args.config is None or args.out is None:
            return _fail("a ceremony step needs --config and --out (or use --verify)")
        config = _config(args.config)
        if config is None:
            return EXIT_CONFIG
        share = own_share(config)
        previous = Transcript(()) if args.previous is None else Transcript.load(args.previous)
        transcript = previous.extend(share)
        transcript.save(args.out)
    except ConfigError as exc:
        return _fail(f"config error: {exc}", EXIT_CONFIG)
    except (KeyFileError, PseudonymError, OSError) as exc:
        return _fail(str(exc))
    step = transcript.steps[-1]
    print(f"step {len(transcript.steps)}: {step.transcryptor}")
    print(f"  Y_(i-1) = {step.previous.hex()}")
    print(f"  U_i     = {step.share.hex()}")
    print(f"  Y_i     = {step.result.hex()}")
    print(f"  proof   = c {step.challenge.hex()}, z {step.response.hex()}")
    print(f"transcript: {args.out}; hand it to the next transcryptor, or, after the last step,")
    print(f"to every transcryptor as {config.ceremony_file.name} in its state directory")
    return 0


def _config(path: Path) -> Any:
    from gateway.transcryptor.config import load_transcryptor_config  # noqa: PLC0415

    try:
        return load_transcryptor_config(path)
    except ConfigError as exc:
        print(f"schakel transcryptor: config error: {exc}", file=sys.stderr)
        return None


def _enrol(args: argparse.Namespace) -> int:
    from gateway.transcryptor.server import load_share  # noqa: PLC0415
    from policy.pseudonyms import KeyFileError, PseudonymError  # noqa: PLC0415

    config = _config(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        share, global_public_key = load_share(config)
        share.domain_factor(args.domain, global_public_key).save(
            args.out, force=args.force, passphrase_file=args.passphrase_file
        )
    except ConfigError as exc:
        return _fail(f"config error: {exc}", EXIT_CONFIG)
    except (KeyFileError, PseudonymError, OSError) as exc:
        return _fail(str(exc))
    sealed = ", sealed" if args.passphrase_file is not None else ""
    print(f"factor of {args.domain} from {share.transcryptor}: {args.out} (mode 0600{sealed})")
    print("the domain multiplies one factor of every transcryptor: schakel certs pep assemble")
    return 0


async def serve(config: Any) -> None:
    """Run a transcryptor until SIGINT or SIGTERM, then stop gracefully."""
    from gateway.transcryptor.server import open_transcryptor  # noqa: PLC0415

    server = open_transcryptor(config)
    await server.start()
    print(f"transcryptor {config.transcryptor.id} listens on {server.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def _run(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.transcryptor.log_level)
    try:
        asyncio.run(serve(config))
    except ConfigError as exc:
        return _fail(f"config error: {exc}", EXIT_CONFIG)
    return 0
