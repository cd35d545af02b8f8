"""Hazardous materials: the primitives under the pseudonym recipes.

Everything here is correct only when the caller gets every detail right:
group arithmetic (:mod:`.group`), encryption and rerandomisation with a
caller-given scalar (:mod:`.elgamal`), the secret per-domain factors
(:mod:`.factors`) and the deterministic, hence linkable, conversion between
domains without the final rerandomisation (:mod:`.conversion`). A reused or
predictable scalar links ciphertexts or leaks the subject; a conversion
without rerandomisation lets anyone who sees both sides link them.

Use the recipes in :mod:`policy.pseudonyms` instead. These modules serve the
recipes, the published test vectors and tests that check the scheme itself.
"""
