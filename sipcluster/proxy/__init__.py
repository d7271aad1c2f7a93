"""
The proxy core (RFC 3261 16): stateful proxying with forking and CANCEL
(L{stateful}), stateless forwarding (L{stateless}), and the steps both share
(L{forwarding}).
"""
