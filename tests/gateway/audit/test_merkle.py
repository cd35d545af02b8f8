"""Merkle hashing, compact ranges and proofs against a straightforward RFC 6962 reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import merkle
from tests.support.audit import reference_root


def _leaves(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def _resolve(leaves: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    return [reference_root(leaves[s:e]) for s, e in ranges]


def _reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH, recursively."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_reference_path(m, leaves[:k]), reference_root(leaves[k:])]
    return [*_reference_path(m - k, leaves[k:]), reference_root(leaves[:k])]


def _reference_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF, recursively."""
    n = len(leaves)
    if m == n:
        return [] if whole else [reference_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_reference_subproof(m, leaves[:k], whole), reference_root(leaves[k:])]
    return [*_reference_subproof(m - k, leaves[k:], False), reference_root(leaves[:k])]


def test_hashes_follow_rfc6962() -> None:
    assert merkle.leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert reference_root([]) == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"x") == reference_root([b"x"])


def test_node_hash_is_prefixed_with_one() -> None:
    left, right = b"\x11" * 32, b"\x22" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert merkle.node_hash(left, right) != merkle.node_hash(right, left)


@pytest.mark.parametrize("n", range(0, 70))
def test_compact_range_root_matches_reference(n: int) -> None:
    leaves = _leaves(n)
    compact = merkle.CompactRange()
    compact.extend(merkle.leaf_hash(x) for x in leaves)
    assert compact.root() == reference_root(leaves)
    assert len(compact.hashes) == bin(n).count("1")
    again = merkle.CompactRange.unpack(n, compact.packed())
    assert again.root() == compact.root()


def test_compact_range_reports_completed_subtrees() -> None:
    leaves = _leaves(37)
    seen: dict[tuple[int, int], bytes] = {}
    compact = merkle.CompactRange()
    for x in leaves:
        compact.append(merkle.leaf_hash(x), lambda lv, ix, h: seen.__setitem__((lv, ix), h))
    for (level, index), digest in seen.items():
        span = 1 << level
        assert digest == reference_root(leaves[index * span : (index + 1) * span])
    assert (5, 0) in seen and (2, 8) in seen and (3, 4) not in seen


def test_compact_range_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="needs 2 hashes"):
        merkle.CompactRange(3, [b"x" * 32])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
def test_inclusion_proofs_match_reference_and_verify(n: int) -> None:
    leaves = _leaves(n)
    root = reference_root(leaves)
    for i in range(n):
        proof = _resolve(leaves, merkle.inclusion_ranges(i, n))
        assert proof == _reference_path(i, leaves)
        merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, proof, root)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 16, 21, 32, 33])
def test_consistency_proofs_match_reference_and_verify(n: int) -> None:
    leaves = _leaves(n)
    for m in range(0, n + 1):
        proof = _resolve(leaves, merkle.consistency_ranges(m, n))
        if 0 < m < n:
            assert proof == _reference_subproof(m, leaves, True)
        merkle.verify_consistency(m, n, reference_root(leaves[:m]), reference_root(leaves), proof)


@given(st.integers(1, 300), st.data())
def test_inclusion_property(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    i = data.draw(st.integers(0, n - 1))
    proof = _resolve(leaves, merkle.inclusion_ranges(i, n))
    root = reference_root(leaves)
    merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, proof, root)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes(32)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, bad, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(b"other"), i, n, proof, root)
    if n > 1:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), (i + 1) % n, n, proof, root)


@given(st.integers(1, 300), st.data())
def test_consistency_property(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(1, n))
    proof = _resolve(leaves, merkle.consistency_ranges(m, n))
    old, new = reference_root(leaves[:m]), reference_root(leaves)
    merkle.verify_consistency(m, n, old, new, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, old, reference_root([*leaves[:-1], b"forked"]), proof)
    if proof:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, old, new, proof[:-1])
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, old, new, [*proof, bytes(32)])


def test_proof_parameters_out_of_range() -> None:
    with pytest.raises(merkle.ProofError, match="not in a tree of size 3"):
        merkle.inclusion_ranges(3, 3)
    with pytest.raises(merkle.ProofError, match="from size 4 to size 3"):
        merkle.consistency_ranges(4, 3)
    with pytest.raises(merkle.ProofError, match="two different roots"):
        merkle.verify_consistency(2, 2, b"a" * 32, b"b" * 32, [])


def test_perfect_subtrees_cover_a_range_in_aligned_pieces() -> None:
    assert merkle.perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert merkle.perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
    assert merkle.perfect_subtrees(4, 8) == [(2, 1)]
