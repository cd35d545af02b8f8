"""Pseudonymisation domains: every organisation (and node) is one, named by its id."""

from __future__ import annotations

from policy.pseudonyms.errors import PseudonymError

MAX_DOMAIN_BYTES = 255


def check_domain(domain: object) -> str:
    """Return ``domain`` if it is a usable domain (organisation or node) id."""
    if not isinstance(domain, str):
        raise PseudonymError(f"a domain id must be a string, not {type(domain).__name__}")
    if not domain or not domain.isprintable() or any(ch.isspace() for ch in domain):
        raise PseudonymError(
            f"a domain id must be non-empty printable text without whitespace, got {domain!r}"
        )
    if len(domain.encode("utf-8")) > MAX_DOMAIN_BYTES:
        raise PseudonymError(f"a domain id must be at most {MAX_DOMAIN_BYTES} bytes of UTF-8")
    return domain
