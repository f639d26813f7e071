"""Handing each champion to the user's stack: exports in standard formats with a manifest
and an atomic ``current`` pointer, hooks that tell people (webhooks, commands) through a
durable outbox, and the client a serving process imports."""
