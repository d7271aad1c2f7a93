"""
SIP transports (RFC 3261 18): UDP and TCP listeners and connections as
Twisted protocols, and the transport layer that frames, parses and routes
messages between them and the transaction layer.
"""
