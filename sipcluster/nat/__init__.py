"""NAT traversal: a STUN binding server on the SIP port, and keepalives toward NATed contacts."""
