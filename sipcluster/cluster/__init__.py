"""
The cluster: nodes coordinated through etcd.  L{etcd} is the only module
that talks to etcd.
"""

from sipcluster.schema import ConfigSection, Key

CONFIG = ConfigSection("cluster", {
    "name": Key(str, "", "Shared host[:port] written in Record-Route so in-dialog requests may reach any node (DNS or an anycast/floating address must lead there); empty: this node's address."),
    "region": Key(str, "default", "Region of this node, published to the cluster."),
    "drain_action": Key(str, "reject", "What a draining node does with a new INVITE: reject (503 + Retry-After) or redirect (302 to an active node: of this region first, then the one with fewest dialogs).",
                        choices=("reject", "redirect")),
    "drain_retry_after_s": Key(int, 30, "Retry-After of the 503 a draining node sends.", minimum=0),
    "leader_hook": Key(str, "", "Command run with argument acquire or release when this node gains or loses leadership (to move a floating address); empty for none."),
    "dialog_max_s": Key(int, 14400, "Longest call, in seconds: a dialog whose BYE was not seen by then ends as expired (with a CDR) and leaves the store.",
                        minimum=60),
    "max_dialogs": Key(int, 0, "Call admission: most dialogs this node carries at once (its own, those adopted from dead nodes, and INVITEs being set up); a new INVITE over it gets 503. 0: no limit. Needs node.mode = stateful.",
                       minimum=0),
    "node_ttl_s": Key(int, 3, "Lease of this node's membership record: a dead node leaves the cluster this long after its last refresh.",
                      minimum=1, maximum=300),
})
