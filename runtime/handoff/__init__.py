"""Handing each champion to the user's stack: exports with a manifest and an atomic
``current`` pointer (a new format goes in ``export``), hooks through a durable outbox (a new
hook kind in ``hooks``), and ``client``, the one module a serving process imports."""
