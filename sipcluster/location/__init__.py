"""
The location service (RFC 3261 10, 16.5): which contacts an address-of-record
is reachable at.  L{interface.ILocationService} is what the proxy and the
registrar use; L{memory} is the single-node implementation.
"""
