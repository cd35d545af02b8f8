"""The transcryptor: one link of the chain that converts pseudonyms between domains.

A federation runs n >= 2 of them, each by a different party, each with its
own secrets, its own policy, rate limit and audit log (``schakel transcryptor
init | ceremony | enrol | run``). :mod:`gateway.chain` is the node's side:
the chain it calls in order.
"""
