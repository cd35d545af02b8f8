"""What a node shows its operators: Prometheus metrics, probes, and exported traces.

:mod:`~gateway.observability.metrics` holds the metric families and the
one-line hooks the node's parts call; :mod:`~gateway.observability.admin`
serves ``/metrics``, ``/healthz`` and ``/readyz`` on the plain-HTTP admin
port; :mod:`~gateway.observability.otel` exports the node's spans over OTLP
when ``[tracing] otlp_endpoint`` is set. Nothing here imports the node's
rooms, so every room may call these hooks.
"""
