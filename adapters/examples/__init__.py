"""Runnable partner systems built on the partner SDK (:mod:`adapters.sdk`)."""
