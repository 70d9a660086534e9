"""Fixtures shared by the end-to-end tests of more than one module."""

from tests.e2e.test_handshake import gate  # noqa: F401  (a gateway, alice and her agent)
