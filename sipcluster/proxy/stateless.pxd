# The compiled build's declarations for stateless.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport), and
# its forwarding functions, which the stateful proxy calls too.
from sipcluster.proxy.core cimport ProxyCore
from sipcluster.proxy.forwarding cimport Forwarder, stateless_branch_suffix
from sipcluster.proxy.pipeline cimport Pipeline
from sipcluster.sip.message cimport Message
from sipcluster.transport.layer cimport TransportLayer

cpdef forward_stateless(Forwarder forwarder, Pipeline pipeline, context, target, proxy)
cpdef _send(peers, Forwarder forwarder, out, context, now=*)
cpdef forward_response_stateless(Forwarder forwarder, Pipeline pipeline, Message response)

cdef class StatelessProxy:
    cdef public TransportLayer transport
    cdef public Forwarder forwarder
    cdef public Pipeline pipeline
    cdef public object clock
    cdef public ProxyCore core
