"""The registrar's Min-Expires boundary (RFC 3261 10.3 step 7), in-process."""

import pytest

from tests.test_registrar import Node, contacts, register


@pytest.fixture
def node():
    return Node(default_expires=3600, min_expires=60, max_expires=7200)


def test_expires_equal_to_min_expires_is_accepted(node):
    resp = node.send(register(expires=60))
    assert resp.status == 200
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 60)]
    assert len(node.location.lookup("sip:alice@example.test")) == 1


def test_contact_expires_equal_to_min_expires_is_accepted(node):
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=60"))
    assert resp.status == 200
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 60)]


@pytest.mark.parametrize("contact,expires", [
    ("<sip:alice@127.0.0.1:5090>", 59),
    ("<sip:alice@127.0.0.1:5090>;expires=59", None),
    ("<sip:alice@127.0.0.1:5090>", 1),  # the shortest lifetime there is: still too brief
])
def test_one_second_under_min_expires_is_423_with_min_expires(node, contact, expires):
    resp = node.send(register(contact, expires=expires))
    assert resp.status == 423
    assert resp.header("Min-Expires") == "60"
    assert node.location.lookup("sip:alice@example.test") == []
