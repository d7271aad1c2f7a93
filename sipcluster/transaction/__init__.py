"""
SIP transactions (RFC 3261 17, with the corrections of RFC 6026): client and
server, INVITE and non-INVITE, their timers, and the layer that matches
messages to them.  Transactions know nothing of routing: they serve a
transaction user (the proxy core).
"""
