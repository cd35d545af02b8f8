"""Key enrolment for the pseudonym scheme (policy/pseudonyms/README.md).

``init_federation`` creates the federation's keys once: the key authority's
file (global key pair and transcryptor secrets; keep it offline) and the
transcryptor file every node loads. ``enrol_domain`` derives one
organisation's decryption key from the authority's file. ``seal_file`` seals
a plain key file with a passphrase in place. Files are 0600 and never
replaced without ``force``; nothing here logs or prints a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import structlog

from policy.pseudonyms import DomainKey, FederationKeys, KeyFileError, check_domain
from policy.pseudonyms.keys import (
    DOMAIN_FORMAT,
    FEDERATION_FORMAT,
    TRANSCRYPTOR_FORMAT,
    read_key_file,
    write_key_file,
)
from policy.pseudonyms.sealing import is_sealed
from policy.pseudonyms.shares import FACTOR_FORMAT, SHARE_FORMAT

FEDERATION_FILE = "federation-keys.json"
TRANSCRYPTOR_FILE = "transcryptor.json"

log = structlog.get_logger(component="certs.pep")


@dataclass(frozen=True)
class FederationFiles:
    """Where ``init_federation`` wrote the keys, and the public key partners encrypt to."""

    federation_keys: Path
    transcryptor: Path
    global_public_key: bytes


def init_federation(out_dir: Path, *, force: bool = False) -> FederationFiles:
    """Create fresh federation keys in ``out_dir`` (made 0700 if missing).

    Without ``force`` nothing is written when either file already exists.
    """
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    federation_path, transcryptor_path = out_dir / FEDERATION_FILE, out_dir / TRANSCRYPTOR_FILE
    if not force:
        for path in (federation_path, transcryptor_path):
            if path.exists():
                raise KeyFileError(f"{path} already exists; pass --force to replace it")
    keys = FederationKeys.generate()
    keys.save(federation_path, force=force)
    try:
        keys.transcryptor_keys().save(transcryptor_path, force=force)
    except BaseException:
        # Leave no half-initialised federation behind: a lone authority file
        # would not match any transcryptor file written later.
        federation_path.unlink(missing_ok=True)
        raise
    log.info("pep.federation_created", out_dir=str(out_dir))
    return FederationFiles(federation_path, transcryptor_path, keys.global_public_key)


def enrol_domain(
    org: str,
    keys_file: Path,
    out_file: Path,
    *,
    force: bool = False,
    passphrase_file: Path | None = None,
) -> DomainKey:
    """Derive ``org``'s domain key from the authority's file and write it to ``out_file``.

    The folder of ``out_file`` is created (0700) when it does not exist yet.
    """
    domain = check_domain(org)
    keys = FederationKeys.load(keys_file)
    material = keys.domain_key_material(domain)
    try:
        out_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create the folder {out_file.parent}: {exc.strerror}") from None
    material.save(out_file, force=force, passphrase_file=passphrase_file)
    log.info("pep.domain_enrolled", domain=domain, out_file=str(out_file))
    return material


SEALABLE = (SHARE_FORMAT, DOMAIN_FORMAT, FACTOR_FORMAT, FEDERATION_FORMAT, TRANSCRYPTOR_FORMAT)
"""The key files ``seal_file`` seals: every file that holds a secret."""


def seal_file(path: Path, passphrase_file: Path) -> str:
    """Seal the plain key file ``path`` in place with the passphrase in ``passphrase_file``.

    Returns the file's format. Refuses a file already sealed, or not a key file.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"{path} is not a JSON key file") from None
    if not isinstance(document, dict) or document.get("format") not in SEALABLE:
        if isinstance(document, dict) and is_sealed(document):
            raise KeyFileError(f"{path} is sealed already")
        raise KeyFileError(f"{path} is not a pseudonym key file")
    form = str(document["format"])
    write_key_file(path, read_key_file(path, form), force=True, passphrase_file=passphrase_file)
    log.info("pep.key_file_sealed", path=str(path), format=form)
    return form
