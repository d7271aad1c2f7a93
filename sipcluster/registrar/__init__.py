"""The registrar (RFC 3261 10.3, RFC 3327, RFC 5626 basics)."""
