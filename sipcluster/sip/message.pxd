# The compiled build's declarations for message.py (Cython augmenting
# .pxd): the message classes become extension types, their slots C fields;
# the C types of the parser's variables (a str's methods called directly,
# indices as C integers).  Here and not as decorators in the .py: mutmut
# does not mutate decorated functions.
import cython

from sipcluster.sip.address cimport Address, parse_address
from sipcluster.sip.grammar cimport is_token, remember, split_commas, split_first
from sipcluster.sip.headers cimport canonical, spelling
from sipcluster.sip.status cimport reason_for
from sipcluster.sip.uri cimport parse_uri
from sipcluster.sip.via cimport parse_cseq, parse_via, share_via

cdef dict _CHECKED_BITS
cdef Py_ssize_t _ONCE_BITS, _VIA_BIT, _MANDATORY_BITS
cdef list _NAMES, _NAME_KEYS
cdef Py_ssize_t _NAME_SLOTS

@cython.locals(n=Py_ssize_t, k=str, i=Py_ssize_t)
cdef Py_ssize_t _index(list keys, str key, Py_ssize_t start) except -2

@cython.locals(numbers=dict)
cpdef _number(str value, digits, fault, highest=*)

@cython.locals(known=dict)
cpdef _key_of(name)

@cython.locals(value=str, start=Py_ssize_t, end=Py_ssize_t)
cpdef str _value_of(str line)

@cython.locals(end=Py_ssize_t, head=bytes, sep=bytes, body=bytes)
cpdef _split_head(bytes data)

@cython.locals(head=str, lines=list, first=str, keys=list, values=list, line=str,
               colon=Py_ssize_t, known=dict, name=str, body=bytes, head_bytes=bytes,
               message=Message, names=list, name_keys=list, n=Py_ssize_t, h=cython.size_t,
               c=cython.Py_UCS4, slot=Py_ssize_t)
cpdef parse_message(data, max_size=*, stream=*)

cdef class Message:
    cdef public list _keys
    cdef public list _lines
    cdef public object body
    cdef public dict _cache
    # The header access other compiled modules call on a message they know
    # the type of, and what the message's own methods call: direct C
    # calls, not attribute lookups (still methods to Python code).
    cpdef header(self, name)
    @cython.locals(keys=list, lines=list, i=Py_ssize_t)
    cpdef values(self, name)
    cpdef has(self, name)
    @cython.locals(keys=list, i=Py_ssize_t, j=Py_ssize_t)
    cpdef add(self, name, value, top=*)
    @cython.locals(keys=list, lines=list, i=Py_ssize_t)
    cpdef set(self, name, value)
    @cython.locals(keys=list, i=Py_ssize_t)
    cpdef remove(self, name)
    @cython.locals(keys=list, lines=list, i=Py_ssize_t, line=str, first=str, rest=str, colon=Py_ssize_t)
    cpdef pop_first(self, name)
    @cython.locals(i=Py_ssize_t, line=str, rest=str, colon=Py_ssize_t)
    cpdef replace_first(self, name, value)
    cpdef push_via(self, via)
    cpdef set_top_via(self, via)
    cpdef pop_via(self)
    cpdef validate(self)
    @cython.locals(lines=list)
    cpdef to_bytes(self)
    cpdef copy(self)
    @cython.locals(i=Py_ssize_t)
    cpdef _single(self, str key)
    cpdef _address(self, str key)
    @cython.locals(i=Py_ssize_t, line=str, tags=dict, address=Address)
    cpdef _tag(self, str key)
    cpdef _address_list(self, str key)
    @cython.locals(known=dict, cache=dict)
    cpdef str _key_for_write(self, name)
    @cython.locals(keys=list, once=frozenset, key=str, i=Py_ssize_t, bits=dict,
                   bit=Py_ssize_t, seen=Py_ssize_t, repeated=Py_ssize_t)
    cpdef _validate(self)
    cpdef str start_line(self)
    cpdef _content_length(self)
    cpdef _top_via(self)
    cpdef _call_id(self)
    cpdef _cseq(self)
    cpdef _max_forwards(self)

cdef class Request(Message):
    cdef public object method
    cdef public object _uri
    cdef public object _uri_text
    cdef public object version
    cpdef _validate(self)
    cpdef str start_line(self)
    cpdef _request_uri(self)
    cpdef _set_uri(self, uri)

cdef class Response(Message):
    cdef public object status
    cdef public object reason
    cdef public object version
    cpdef str start_line(self)

@cython.locals(parts=list, version=str, code=str, codes=dict)
cpdef _parse_status_line(str line, list keys, list lines, bytes body)
@cython.locals(parts=list, method=str, uri=str, version=str, colon=Py_ssize_t, scheme=str)
cpdef _parse_request_line(str line, list keys, list lines, bytes body)

@cython.locals(response=Response)
cpdef _new_response(status, reason, list keys, list lines, bytes body)

@cython.locals(request=Request)
cpdef _new_request(method, uri, list keys, list lines, bytes body, version)

@cython.locals(keys=list, lines=list, request_lines=list, i=Py_ssize_t)
cpdef make_response(request, status, reason=*, to_tag=*, extra=*)
