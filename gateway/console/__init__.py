"""The officers' web console: server-rendered pages for the procesregisseur and the FG.

A transport beside :mod:`gateway.rpc`: it serves HTTPS on ``[console]
listen`` behind the node's mTLS, takes the officer's identity from the
verified client certificate, and calls the same flows as the gRPC API.
"""
