"""Data coming in: each source kind in its own module (directory, demo stream, Redis,
RabbitMQ), validating and appending rows (ingest), decoding HTTP bodies, the API's inbox."""
