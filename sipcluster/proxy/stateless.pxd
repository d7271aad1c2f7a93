# The compiled build's declarations for stateless.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport), and
# its forwarding functions, which the stateful proxy calls too.
from sipcluster.proxy.forwarding cimport stateless_branch_suffix

cpdef forward_stateless(forwarder, pipeline, context, target, proxy)
cpdef _send(peers, forwarder, out, context, now=*)
cpdef forward_response_stateless(forwarder, pipeline, response)
