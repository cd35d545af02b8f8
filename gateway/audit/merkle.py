"""RFC 6962 / RFC 9162 Merkle tree hashing, compact ranges, proofs and verifiers.

Proof *generation* here is independent of storage: it yields the list of
leaf ranges whose subtree hashes make up the proof, and the store resolves
each range to a hash (from its subtree cache or its leaf hashes). Verification
follows RFC 9162 §2.1.3.2 and §2.1.4.2 bit for bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 9162 §2.1.1)."""

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not verify, or its parameters are impossible."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The right-edge perfect subtree roots of a tree of ``size`` leaves.

    ``hashes[i]`` is the root of the i-th perfect subtree, left to right, one
    per set bit of ``size`` from the highest down. Appending a leaf merges
    equal-sized subtrees, so the amortised cost is two hashes per leaf and
    the state is at most 64 hashes whatever the size.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or bin(size).count("1") != len(hashes):
            raise ValueError(
                f"a compact range of size {size} needs {bin(size).count('1')} hashes, "
                f"got {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)

    def append(
        self, leaf: bytes, on_subtree: Callable[[int, int, bytes], None] | None = None
    ) -> None:
        """Add one leaf hash; ``on_subtree(level, index, hash)`` sees every completed subtree."""
        hashes = self.hashes
        size = self.size
        hashes.append(leaf)
        level = 0
        while size & 1:
            right = hashes.pop()
            merged = node_hash(hashes.pop(), right)
            hashes.append(merged)
            size >>= 1
            level += 1
            if on_subtree is not None:
                on_subtree(level, size, merged)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The Merkle tree hash of the whole range."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            root = node_hash(h, root)
        return root

    def packed(self) -> bytes:
        """The hashes concatenated, for storage in the head row."""
        return b"".join(self.hashes)

    @classmethod
    def unpack(cls, size: int, packed: bytes) -> CompactRange:
        """Rebuild from :meth:`packed` output."""
        if len(packed) % HASH_SIZE:
            raise ValueError(f"packed compact range is {len(packed)} bytes, not whole hashes")
        return cls(size, [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)])

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self.size, self.hashes)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split leaf range [start, end) into aligned perfect subtrees (level, index), left to right.

    Every range a proof refers to is either a perfect subtree or the right
    edge of the tree, so it splits into at most ~log2(n) stored subtrees.
    """
    out: list[tuple[int, int]] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else 63
        while (1 << level) > end - start:
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form the inclusion path of ``index`` in ``size``, leaf to root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    path: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form the consistency proof from ``old_size`` to ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[tuple[int, int]] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                proof.append((start, end))
            return
        k = largest_power_of_two_below(n)
        if m <= k:
            subproof(m, start, start + k, whole)
            proof.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append((start, start + k))

    subproof(old_size, 0, new_size, True)
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); raise :class:`ProofError` if it fails."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError("proof hash is not 32 bytes")
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree needs")
    if r != root:
        raise ProofError(
            f"inclusion proof of leaf {index} does not lead to the root of size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof (RFC 9162 §2.1.4.2); raise :class:`ProofError` if it fails."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"size {new_size} cannot extend size {old_size}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("proof hash is not 32 bytes")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the sizes allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the sizes need")
    if fr != old_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {new_size}")
