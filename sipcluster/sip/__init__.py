"""
The SIP wire format (RFC 3261 section 7, 19, 20, 25): parse and serialize
messages, URIs and the structured headers a proxy needs.

Nothing in this package performs I/O; transports hand it bytes and get bytes
back.  Every parsing function raises only L{sipcluster.sip.errors.SIPError}
(or a subclass) on bad input, and that error carries the status code a server
must answer with.
"""
