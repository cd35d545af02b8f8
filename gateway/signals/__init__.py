"""National aggregate signalling (issue #7): suppressed counts per node, and the collector.

See README.md in this directory.
"""
