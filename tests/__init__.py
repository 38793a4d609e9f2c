"""Integration tests for `edge`: they start the real server as a subprocess."""
