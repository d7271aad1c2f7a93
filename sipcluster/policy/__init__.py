"""
Policies of the request pipeline's C{request} point: who may send
requests through a node (L{acl}), and who they are (L{auth}, with the
wire format of digest authentication in L{digest} and the users it checks
against in L{users}).
"""
