# The compiled build's declarations for stateful.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport), and
# the stateful proxy as an extension type whose branch and upstream
# methods its response contexts call in C.
import cython

from sipcluster.proxy.core cimport ProxyCore
from sipcluster.proxy.forwarding cimport Forwarder, Target, short_hash
from sipcluster.proxy.pipeline cimport Pipeline, RequestContext
from sipcluster.proxy.stateless cimport forward_response_stateless, forward_stateless
from sipcluster.sip.message cimport Message, Request
from sipcluster.sip.via cimport Via
from sipcluster.transaction.layer cimport TransactionLayer, key_text
from sipcluster.transaction.server cimport ServerTransaction
from sipcluster.transaction.timers cimport TimerValues
from sipcluster.transport.base cimport Source

cdef class StatefulProxy:
    cdef public TransactionLayer transactions
    cdef public Forwarder forwarder
    cdef public object clock
    cdef public TimerValues timers
    cdef public Pipeline pipeline
    cdef public ProxyCore core
    cdef public dict contexts
    cdef public set setups
    cdef public object _on_answer
    cdef public object _on_trying
    cpdef request_received(self, ServerTransaction server_tx)
    cpdef forward(self, RequestContext context, targets)
    @cython.locals(context=RequestContext, request=Request, source=Source, target=Target)
    cpdef start_branch(self, rc, branch)
    @cython.locals(source=Source)
    cpdef _send_branch(self, rc, branch, Request out, peers)
    cpdef local_response(self, request, status, reason=*, headers=*)
    cpdef send_upstream(self, rc, Message response)
    cpdef _owns_via(self, Via via)
    cpdef final_sent(self, rc, response)
