"""NAT traversal: a STUN binding server on the SIP port, and keepalives toward NATed contacts."""

from sipcluster.schema import ConfigSection, Key

CONFIG = ConfigSection("nat", {
    "stun": Key(bool, True, "Answer STUN Binding requests (RFC 5389) on the SIP UDP ports."),
    "keepalive_interval_s": Key(int, 0, "Send keepalives to NATed UDP contacts this often, in seconds; 0 turns them off.", minimum=0),
    "keepalive_method": Key(str, "options", "Keepalive sent: options (answered, so dead contacts can be found) or crlf (RFC 5626 ping).",
                            choices=("options", "crlf")),
    "keepalive_remove": Key(bool, False, "Remove a binding whose keepalive OPTIONS goes unanswered."),
})
