# -*- test-case-name: tests.test_pipeline -*-
"""
The interfaces of request pipeline stages, one per point
(L{sipcluster.proxy.pipeline}).  Kept apart from the pipeline so that the
compiled build leaves this module pure Python: zope.interface reads an
interface's methods as plain functions, which compiled ones are not.
"""

from zope.interface import Attribute, Interface


class IStage(Interface):
    """What every stage declares, like a Kamailio module's exports."""

    name = Attribute("A short name for logs and errors (\"registrar\", \"drain\").")
    points = Attribute("The pipeline points it runs at: a tuple of POINTS.")
    needs_transactions = Attribute(
        "True when it only works on a stateful node (it follows responses, "
        "dialogs or failures); a stateless node refuses it at start-up.")
    config_key = Attribute(
        "The configuration key that enabled the stage (\"cluster.max_dialogs\"), "
        "named by the start-up error when the stage cannot run here; or None.")


class IRequestStage(IStage):
    def on_request(context):
        """
        A request entering the node.  Return None to continue, raise
        L{Respond} to answer it, or return a Deferred.
        """


class ITargetStage(IStage):
    def targets(context):
        """
        Targets for the request: a list of L{Target} (the walk ends), None
        (not mine: the next stage decides), or a Deferred of either.  Raise
        L{Respond} or call C{context.respond} to answer instead.
        """


class IBranchStage(IStage):
    def branch(context, request, target):
        """
        C{request} is the copy about to be sent to C{target}, Via and
        Record-Route added: edit it in place.  Return None or a Deferred;
        raise L{Respond} to fail this branch with that status.
        """


class IResponseStage(IStage):
    def response(context, response):
        """
        C{response} is going upstream (our Via removed).  C{context} is
        None on a stateless node.  Edit it in place; the return is ignored.
        """


class IFailureStage(IStage):
    def failure(context, responses):
        """
        Every branch of a stateful request ended without a 2xx or 6xx;
        C{responses} are their final responses.  Return new targets (a
        list of L{Target}) to fork to next, None to let the best response
        go upstream, or a Deferred of either.
        """


class IDialogStage(IStage):
    def dialog_confirmed(request, response):
        """A 2xx to an initial INVITE went upstream: a dialog exists."""

    def dialog_ended(request, response):
        """A final response to a BYE went upstream: the dialog is over."""

    def call_failed(request, response, started):
        """
        An initial INVITE was finally answered with a failure, here or
        downstream; C{started} is when it arrived (reactor seconds).
        """
