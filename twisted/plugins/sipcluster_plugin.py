"""The C{twistd sipcluster} plugin: one line pointing at sipcluster.tap."""

from twisted.application.service import ServiceMaker

sipcluster = ServiceMaker(
    "sipcluster", "sipcluster.tap", "A clustered SIP proxy server node.", "sipcluster")
