# The compiled build's declarations for stateless.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport), and
# its forwarding functions, which the stateful proxy calls too.
import cython

from sipcluster.proxy.core cimport ProxyCore
from sipcluster.proxy.forwarding cimport Forwarder, Target, stateless_branch_suffix
from sipcluster.proxy.pipeline cimport Pipeline, RequestContext
from sipcluster.sip.message cimport Message, Request
from sipcluster.sip.via cimport Via
from sipcluster.transport.base cimport Source
from sipcluster.transport.layer cimport TransportLayer

@cython.locals(request=Request, source=Source)
cpdef forward_stateless(Forwarder forwarder, Pipeline pipeline, RequestContext context, Target target,
                        proxy)
@cython.locals(source=Source)
cpdef _send(peers, Forwarder forwarder, Request out, RequestContext context, now=*)
@cython.locals(top=Via)
cpdef forward_response_stateless(Forwarder forwarder, Pipeline pipeline, Message response)

cdef class StatelessProxy:
    cdef public TransportLayer transport
    cdef public Forwarder forwarder
    cdef public Pipeline pipeline
    cdef public object clock
    cdef public ProxyCore core
