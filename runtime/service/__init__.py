"""The daemon as a service: the HTTP API and its schema, the server thread, the /ui router,
Prometheus metrics, the scheduler, systemd notify and JSON logs."""
