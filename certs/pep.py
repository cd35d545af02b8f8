"""Key enrolment for the pseudonym scheme (policy/pseudonyms/README.md).

``init_federation`` creates the federation's keys once: the key authority's
file (global key pair and transcryptor secrets; keep it offline) and the
transcryptor file every node loads. ``enrol_domain`` derives one
organisation's decryption key from the authority's file. Files are 0600 and
never replaced without ``force``; nothing here logs or prints a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from policy.pseudonyms import DomainKey, FederationKeys, KeyFileError, check_domain

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


def enrol_domain(org: str, keys_file: Path, out_file: Path, *, force: bool = False) -> DomainKey:
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
    material.save(out_file, force=force)
    log.info("pep.domain_enrolled", domain=domain, out_file=str(out_file))
    return material
