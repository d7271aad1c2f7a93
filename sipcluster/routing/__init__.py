"""
Routing: how a node chooses where a request goes.  Each module is a target
selection stage of the request pipeline (L{sipcluster.proxy.pipeline}):
requests for the node itself (L{local}), the location service
(L{location}), the Request-URI as written (L{local}), and the cluster's
routing decisions (L{cluster}: region preference, flows held by other
nodes, which node a draining one sends callers to).
"""
