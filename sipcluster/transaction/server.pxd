# The compiled build's declarations for server.py (Cython augmenting .pxd).
from sipcluster.sip.message cimport Response
from sipcluster.transaction.base cimport Transaction

cdef class ServerTransaction(Transaction):
    cdef public object source
    cdef public object last_response
    cdef public object on_terminated
    cdef public object _interval
    cdef public object peer
    cpdef _send(self, Response response)
    cpdef _deliver(self, Response response)
    cpdef terminate(self)

cdef class ServerInviteTransaction(ServerTransaction):
    cpdef respond(self, Response response)
    cpdef receive_request(self, request)
    cpdef receive_ack(self, ack)
    cpdef timer_fired(self, name)

cdef class ServerNonInviteTransaction(ServerTransaction):
    cpdef respond(self, Response response)
    cpdef timer_fired(self, name)
    cpdef receive_request(self, request)
