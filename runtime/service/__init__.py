"""The daemon as a service: the HTTP API (a new endpoint goes in ``api``; its schema, limits
and model artifacts beside it), the server thread, the ``/ui`` router, Prometheus metrics,
the scheduler, systemd notify and JSON logs."""
