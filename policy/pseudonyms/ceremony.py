"""The key ceremony: the federation key ``Y`` built share by share, so that ``y`` never exists.

``Y_0 = G``, ``Y_i = y_i * Y_{i-1}``, ``Y = Y_n``. Transcryptor ``i`` takes the
transcript so far, checks every step in it, and appends its own step with a
proof (:mod:`policy.pseudonyms.hazmat.dleq`) that the ``y_i`` behind its
public share ``U_i = y_i * G`` is the one that made ``Y_i``. Anybody can
check the finished transcript with public values only; every transcryptor
loads it at start and finds its own step in it.

The transcript is a public JSON file, ``schakel-pep-ceremony/v1``::

    {"format": "schakel-pep-ceremony/v1",
     "global_public_key": "<Y, hex>",
     "steps": [{"transcryptor": "<id>", "previous": "<Y_{i-1}>", "share": "<U_i>",
                "result": "<Y_i>", "challenge": "<c>", "response": "<z>"}, ...]}

A federation that moved from the single scheme without the key authority's
file has no steps: its ``global_public_key`` is taken over from the node's
``transcryptor.json`` as it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.pseudonyms.errors import KeyFileError, PseudonymError
from policy.pseudonyms.hazmat import dleq, group
from policy.pseudonyms.shares import TranscryptorShare

CEREMONY_FORMAT = "schakel-pep-ceremony/v1"


@dataclass(frozen=True)
class Step:
    """One transcryptor's step: ``Y_i = y_i * Y_{i-1}``, with ``U_i`` and the proof."""

    transcryptor: str
    previous: bytes
    share: bytes
    result: bytes
    challenge: bytes
    response: bytes

    def check(self) -> None:
        """Raise PseudonymError unless the proof holds."""
        try:
            dleq.verify(self.previous, self.share, self.result, self.challenge, self.response)
        except PseudonymError as exc:
            raise PseudonymError(f"step of {self.transcryptor!r}: {exc}") from None


@dataclass(frozen=True)
class Transcript:
    """The ceremony so far; :attr:`global_public_key` is ``Y`` once the last step is in."""

    steps: tuple[Step, ...]
    taken_over: bytes | None = None
    """``Y`` as taken over from a single-scheme file, for a transcript without steps."""

    @property
    def global_public_key(self) -> bytes:
        """``Y_n``, the key partners encrypt under."""
        if self.steps:
            return self.steps[-1].result
        if self.taken_over is None:
            raise PseudonymError("the ceremony has no steps yet")
        return self.taken_over

    @property
    def done(self) -> bool:
        """True when the transcript names a federation key."""
        return bool(self.steps) or self.taken_over is not None

    @property
    def transcryptors(self) -> list[str]:
        """The ids of the transcryptors that took part, in order."""
        return [step.transcryptor for step in self.steps]

    def check(self) -> bytes:
        """Check every step and their order; return ``Y_n`` (``G`` before the first step)."""
        previous = group.GENERATOR
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.transcryptor in seen:
                raise PseudonymError(
                    f"step {i}: transcryptor {step.transcryptor!r} took part twice"
                )
            seen.add(step.transcryptor)
            if step.previous != previous:
                raise PseudonymError(f"step {i} does not start from the result of the step before")
            step.check()
            previous = step.result
        return self.taken_over or previous

    def extend(self, share: TranscryptorShare) -> Transcript:
        """This transcript with ``share``'s step appended, after checking what is there."""
        if self.taken_over is not None:
            raise PseudonymError("a key taken over from a single-scheme file takes no more steps")
        self.check()
        if share.transcryptor in self.transcryptors:
            raise PseudonymError(f"transcryptor {share.transcryptor!r} already took its step")
        secret = share.require_key_share()
        previous = self.steps[-1].result if self.steps else group.GENERATOR
        u, result, c, z = dleq.prove(secret, previous)
        return Transcript((*self.steps, Step(share.transcryptor, previous, u, result, c, z)))

    def step_of(self, transcryptor: str) -> Step | None:
        """The step ``transcryptor`` took, if any."""
        return next((s for s in self.steps if s.transcryptor == transcryptor), None)

    def to_json(self) -> str:
        """The ``schakel-pep-ceremony/v1`` document."""
        doc: dict[str, Any] = {
            "format": CEREMONY_FORMAT,
            "global_public_key": self.global_public_key.hex() if self.done else "",
            "steps": [
                {
                    "transcryptor": s.transcryptor,
                    "previous": s.previous.hex(),
                    "share": s.share.hex(),
                    "result": s.result.hex(),
                    "challenge": s.challenge.hex(),
                    "response": s.response.hex(),
                }
                for s in self.steps
            ],
        }
        return json.dumps(doc, indent=2) + "\n"

    def save(self, path: Path) -> None:
        """Write the transcript (public: no secret in it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Transcript:
        """Read a transcript and check it; KeyFileError says what is wrong."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyFileError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise KeyFileError(f"{path} is not a readable JSON file") from None
        try:
            return cls.from_document(doc)
        except (PseudonymError, KeyError, TypeError, ValueError) as exc:
            raise KeyFileError(f"{path}: {exc}") from None

    @classmethod
    def from_document(cls, doc: Any) -> Transcript:
        """Parse and check a ``schakel-pep-ceremony/v1`` document."""
        if not isinstance(doc, dict) or doc.get("format") != CEREMONY_FORMAT:
            raise PseudonymError(f"not a {CEREMONY_FORMAT} document")
        steps = tuple(_step(raw) for raw in doc.get("steps", []))
        declared = doc.get("global_public_key", "")
        taken_over = None
        if not steps:
            taken_over = group.check_point(bytes.fromhex(declared), "global_public_key")
        transcript = cls(steps, taken_over)
        y = transcript.check()
        if steps and declared and bytes.fromhex(declared) != y:
            raise PseudonymError("global_public_key is not the result of the last step")
        return transcript


def _step(raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise PseudonymError("a step must be an object")
    transcryptor = raw["transcryptor"]
    if not isinstance(transcryptor, str):
        raise PseudonymError("a step's transcryptor must be a string")
    values = [
        bytes.fromhex(raw[k]) for k in ("previous", "share", "result", "challenge", "response")
    ]
    return Step(transcryptor, *values)


def taken_over(global_public_key: bytes) -> Transcript:
    """The transcript of a federation whose ``Y`` comes from a single-scheme file."""
    return Transcript((), group.check_point(global_public_key, "the global public key"))


def run_ceremony(shares: Sequence[TranscryptorShare]) -> Transcript:
    """All steps in one go, for a test or development federation whose shares are all here."""
    transcript = Transcript(())
    for share in shares:
        transcript = transcript.extend(share)
    return transcript
