"""The node's holder of its current policy: signed, hot-reloaded, last good kept.

:class:`PolicyStore` loads a bundle only after its detached signature
verifies under the pinned public key. It polls the bundle and signature
files (a change of either triggers a full verify and load)
and swaps in the new evaluator atomically. A reload that fails - unsigned,
tampered, wrong key, invalid YAML - is logged and the last good bundle stays
in force.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policy.compiler import compile_bundle
from policy.evaluator import Decision, Evaluator, Request
from policy.loader import load_bundle_bytes
from policy.model import PolicyError
from policy.signing import SignatureError, load_public_key, signature_path, verify_bytes

log = structlog.get_logger("schakel.policy")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _digest(data: bytes | None) -> bytes:
    return b"" if data is None else hashlib.sha256(data).digest()


class PolicyStore:
    """The current evaluator of a node, loaded from a signed bundle file.

    The constructor loads the bundle and raises when it is not validly
    signed: a node must not start without a policy. Call :meth:`start` to
    poll for changes in a background thread, or :meth:`check` to poll once.
    A poll reads both files and compares their digests with the last seen:
    bundles are small, and mtime alone misses a same-size rewrite within the
    file system's timestamp granularity.
    """

    def __init__(
        self, bundle_path: str | Path, public_key: Ed25519PublicKey, *, interval: float = 1.0
    ) -> None:
        self.bundle_path = Path(bundle_path)
        self._sig_path = signature_path(self.bundle_path)
        self._key = public_key
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        bundle, sig = _read(self.bundle_path), _read(self._sig_path)
        self._stamp = (_digest(bundle), _digest(sig))
        self._evaluator = self._load(bundle, sig)
        self._bytes = bundle or b""
        self.last_error: str = ""
        """Why the most recent reload failed; empty after a successful one."""
        self.on_reload: Callable[[], None] | None = None
        """Called (in the thread that reloaded) after a new bundle took effect."""
        log.info("policy.loaded", bundle_hash=self._evaluator.bundle_hash)

    @classmethod
    def from_files(
        cls, bundle_path: str | Path, public_key_path: str | Path, *, interval: float = 1.0
    ) -> PolicyStore:
        """Open ``bundle_path`` under the pinned public key in ``public_key_path`` (PEM)."""
        return cls(bundle_path, load_public_key(public_key_path), interval=interval)

    @property
    def evaluator(self) -> Evaluator:
        """The evaluator of the bundle in force."""
        return self._evaluator

    @property
    def bundle_bytes(self) -> bytes:
        """The signed bytes of the bundle in force, as they were read."""
        return self._bytes

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The pinned key the bundle's signature was checked with."""
        return self._key

    @property
    def bundle_hash(self) -> str:
        """Hash of the bundle in force."""
        return self._evaluator.bundle_hash

    def decide(self, request: Request) -> Decision:
        """Decide under the bundle in force."""
        return self._evaluator.decide(request)

    def _load(self, bundle: bytes | None, sig: bytes | None) -> Evaluator:
        if bundle is None:
            raise PolicyError(f"{self.bundle_path}: cannot read the bundle")
        if sig is None:
            raise SignatureError(
                f"{self.bundle_path} is unsigned: {self._sig_path.name} is missing"
            )
        verify_bytes(bundle, sig, self._key)
        return Evaluator(compile_bundle(load_bundle_bytes(bundle, str(self.bundle_path))))

    def check(self) -> bool:
        """Reload when the bundle or signature changed; True when a new bundle took effect."""
        with self._lock:
            bundle, sig = _read(self.bundle_path), _read(self._sig_path)
            stamp = (_digest(bundle), _digest(sig))
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                evaluator = self._load(bundle, sig)
            except PolicyError as exc:
                # The first line only: a loader error lists problems with positions,
                # never bundle content beyond names, and the log wants one event.
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning(
                    "policy.reload_refused",
                    error=self.last_error,
                    kept_bundle_hash=self._evaluator.bundle_hash,
                )
                return False
            self.last_error = ""
            if evaluator.bundle_hash == self._evaluator.bundle_hash:
                return False
            previous = self._evaluator.bundle_hash
            self._evaluator = evaluator
            self._bytes = bundle or b""
            log.info("policy.reloaded", bundle_hash=evaluator.bundle_hash, previous=previous)
        if self.on_reload is not None:
            self.on_reload()
        return True

    def start(self) -> None:
        """Poll for changes every ``interval`` seconds in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="policy-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()
