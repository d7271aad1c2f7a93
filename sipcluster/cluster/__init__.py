"""
The cluster: nodes coordinated through etcd.  L{etcd} is the only module
that talks to etcd.
"""
