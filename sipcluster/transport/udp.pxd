# The compiled build's declarations for udp.py (Cython augmenting .pxd).
#
# Compiled, an IPv4 listener reads and writes its datagrams with recvfrom
# and sendto called here, as Kamailio's udp_rcv_loop and udp_send do: no
# socket-object call per datagram (its argument parsing, the address
# tuple made from a sockaddr by inet_ntop and Py_BuildValue, a 64 KiB
# bytes allocated and shrunk at every read, the GIL released around a
# call that cannot block) and no FIONREAD ioctl through fcntl.  For a
# listener's socket (non-blocking, no timeout) what they do is what
# socket.recvfrom(n) and socket.sendto(data, (host, port)) do, except that
# an interrupted send is retried at once (Python runs signal handlers
# first; a node's are Twisted's, which only wake the reactor; an
# interrupted read ends the wake-up, as Twisted's port does); they are not
# for blocking sockets or ones with a timeout.  The pure-Python build (and
# any IPv6 listener) calls the socket module.
import cython

cdef extern from *:
    """
    #include <errno.h>
    #include <string.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <netinet/in.h>

    /* Where a listener's datagram is read before it is copied into its
       bytes object: reads run on the reactor's thread only. */
    static char sipcluster_udp_buffer[65536];

    /* One datagram of fd read into sipcluster_udp_buffer (at most size
       bytes of it, as recvfrom cuts a longer one; a size out of 0 to the
       buffer's reads up to the buffer's), without waiting: its
       length, the sender's IPv4 address (network order, as s_addr) in
       *host and its port in *port; or minus errno (EAGAIN when none is
       queued). */
    static Py_ssize_t sipcluster_recv4(int fd, Py_ssize_t size,
                                       unsigned int *host, unsigned int *port)
    {
        struct sockaddr_in from;
        socklen_t length = sizeof(from);
        ssize_t n;
        if (size < 0 || size > (Py_ssize_t)sizeof(sipcluster_udp_buffer))
            size = sizeof(sipcluster_udp_buffer);
        memset(&from, 0, sizeof(from));
        n = recvfrom(fd, sipcluster_udp_buffer, (size_t)size, MSG_DONTWAIT,
                     (struct sockaddr *)&from, &length);
        if (n < 0)
            return -(Py_ssize_t)errno;
        *host = (unsigned int)from.sin_addr.s_addr;
        *port = ntohs(from.sin_port);
        return (Py_ssize_t)n;
    }

    /* size bytes of data sent to host:port (host as s_addr) on fd, an
       interrupted call retried as Python retries it: 0, or errno. */
    static int sipcluster_send4(int fd, const char *data, Py_ssize_t size,
                                unsigned int host, unsigned int port)
    {
        struct sockaddr_in to;
        memset(&to, 0, sizeof(to));
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = host;
        to.sin_port = htons((unsigned short)port);
        while (sendto(fd, data, (size_t)size, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
            if (errno != EINTR)
                return errno;
        }
        return 0;
    }
    """
    char sipcluster_udp_buffer[65536]
    Py_ssize_t sipcluster_recv4(int fd, Py_ssize_t size, unsigned int *host, unsigned int *port)
    int sipcluster_send4(int fd, const char *data, Py_ssize_t size, unsigned int host, unsigned int port)

@cython.locals(fd=int, size=Py_ssize_t, limit=Py_ssize_t, read=Py_ssize_t, n=Py_ssize_t,
               host=cython.uint, port_number=cython.uint, key=cython.ulonglong, no=int)
cdef _read_ipv4(port)

@cython.locals(fd=int, address=cython.longlong, number=cython.longlong, error=int, data=bytes)
cpdef _send_ipv4(sock, payload, host, port)
