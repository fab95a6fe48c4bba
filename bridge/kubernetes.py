"""The Kubernetes bridge: Gas Town resources in a cluster -> the reconcile core.

Built on kopf, which owns what an operator must get right and we should not
write again: list-then-watch with re-listing after a dropped or expired (410)
watch, resuming every existing object after a restart, per-object handlers
retried with backoff, finalizers, and Events for handler errors. Our handlers
are thin: parse the object into our model, then the same `Reconciler` calls as
`gastown apply` / `gastown delete`.

Status flows the other way without the bridge: each workflow writes its CR's
status subresource through an activity (see workflows/publisher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import Any

import kopf
from temporalio.common import MetricMeter
from temporalio.service import RPCError, RPCStatusCode

from activities.kube import KubeConnection
from bridge import peering
from bridge.reconcile import CONTROLLERS, RIG_NOT_FOUND, NotFound, NoWorker, Reconciler, Seen
from client.connection import connect, metrics_runtime
from client.settings import Settings
from crds import GROUP, KINDS, VERSION, InvalidResource, Resource, parse_resource

FINALIZER = "gastown.gastown.io/finalizer"
PREFIX = "gastown.gastown.io"
RETRY_SECONDS = 5.0
# Applies at work on Temporal at once. kopf runs a handler per object, all at once: a burst of a
# thousand new objects sent a thousand updates-with-start to a server that takes tens a second,
# and those that waited past their deadline failed, were logged and retried. Bounded, each
# waits its turn in the bridge instead. (Deletes are not: one waits for its work to stop.)
IN_FLIGHT = 50


def _resource(body: kopf.Body) -> Resource:
    """The object as our model; a permanent handler error (an Event on it) if invalid."""
    try:
        return parse_resource(dict(body))
    except InvalidResource as error:
        raise kopf.PermanentError(str(error)) from None


@contextlib.contextmanager
def _retried_while_temporal_is_down() -> Iterator[None]:
    """Temporal unreachable (down, restarting): a short retry saying so, not kopf's 60 s and a traceback."""
    try:
        yield
    except RPCError as error:
        if error.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        raise kopf.TemporaryError(f"Temporal did not answer: {error}", delay=RETRY_SECONDS) from None
    except RuntimeError as error:
        if not str(error).startswith("Failed client connect"):
            raise
        raise kopf.TemporaryError(f"Temporal is not reachable: {error}", delay=RETRY_SECONDS) from None


class HandlerMetrics:
    """How long handlers take and how they end, by kind, handler (apply, delete) and outcome (ok;
    retried: kopf tries again; refused: an Event says why; error). Served on the bridge's
    `--metrics` as gastown_bridge_handler_seconds and gastown_bridge_handler_errors_total."""

    def __init__(self, meter: MetricMeter) -> None:
        self.duration = meter.create_histogram_timedelta(
            "gastown_bridge_handler",
            "A handler's run, from the event to the reconciled workflow.",
            unit="duration",
        )
        self.errors = meter.create_counter(
            "gastown_bridge_handler_errors", "Handler runs that did not succeed."
        )

    @contextlib.contextmanager
    def timed(self, kind: str, handler: str) -> Iterator[None]:
        began, outcome = time.monotonic(), "ok"
        try:
            yield
        except kopf.TemporaryError:
            outcome = "retried"
            raise
        except kopf.PermanentError:
            outcome = "refused"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            labels = {"kind": kind, "handler": handler, "outcome": outcome}
            self.duration.record(timedelta(seconds=time.monotonic() - began), labels)
            if outcome != "ok":
                self.errors.add(1, labels)


async def _apply(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger | Any, **_: Any) -> None:
    async with memo["in_flight"]:
        with memo["metrics"].timed(body["kind"], "apply"), _retried_while_temporal_is_down():
            await _apply_resource(memo["reconciler"], _resource(body), logger)


async def _apply_resource(reconciler: Reconciler, resource: Resource, logger: logging.Logger | Any) -> None:
    seen: Seen = {}
    problems = await reconciler.problems([resource], seen)
    if problems:
        text = "\n".join(problems)
        if any(line.endswith(RIG_NOT_FOUND) for line in problems):
            raise kopf.TemporaryError(text, delay=RETRY_SECONDS)  # the Rig may be applied next
        raise kopf.PermanentError(text)
    try:
        outcome = await reconciler.apply(resource, seen)
    except NoWorker as error:
        raise kopf.TemporaryError(str(error), delay=RETRY_SECONDS) from None
    except InvalidResource as error:
        raise kopf.PermanentError(str(error)) from None
    logger.info(f"{resource.ref} {outcome}")


async def _delete(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger | Any, **_: Any) -> None:
    reconciler: Reconciler = memo["reconciler"]
    model = KINDS[body["kind"]]
    name, namespace = body["metadata"]["name"], body["metadata"].get("namespace")
    with memo["metrics"].timed(model.INFO.kind, "delete"):
        try:
            with _retried_while_temporal_is_down():
                await reconciler.delete(model, namespace, name)
        except NotFound:
            pass
        except TimeoutError:
            raise kopf.TemporaryError(
                f"{model.INFO.kind} {name}: its work did not stop yet", delay=RETRY_SECONDS
            ) from None
    logger.info(f"{model.INFO.kind} {name}: work stopped, workflow ended")


def operator_settings() -> kopf.OperatorSettings:
    """kopf's settings, given to the operator before it starts: its first peering keep-alive
    already carries our priority and lifetime (a startup handler runs after it)."""
    settings = kopf.OperatorSettings()
    # Several bridges, the oldest active (bridge/peering.py); with --standalone, kopf ignores these.
    settings.peering.priority = peering.seniority()
    settings.peering.lifetime = peering.LIFETIME
    settings.peering.stealth = True  # no log line per keep-alive
    settings.persistence.finalizer = FINALIZER
    # Our own status belongs to the workflows: kopf keeps its bookkeeping in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # Problems (handler failures among them) become Events on the object; successes do not.
    settings.posting.loggers = True
    settings.posting.level = logging.WARNING
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    settings.watching.reconnect_backoff = 1.0
    return settings


def registry() -> kopf.OperatorRegistry:
    """kopf handlers for all six kinds: apply on create/update/resume, delete with a finalizer."""
    handlers = kopf.OperatorRegistry()
    kopf.on.login(registry=handlers)(_login)
    for model in KINDS.values():
        plural = model.INFO.plural
        for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
            on(GROUP, VERSION, plural, registry=handlers, id="apply")(_apply)
        if model.INFO.kind in CONTROLLERS:  # no finalizer on kinds this version cannot stop
            kopf.on.delete(GROUP, VERSION, plural, registry=handlers, id="delete")(_delete)
    return handlers


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


async def run_bridge(
    settings: Settings,
    namespaces: Collection[str] = (),
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    liveness: str | None = None,
    standalone: bool = False,
) -> None:
    """Watch the cluster (or `namespaces`) until `stop` is set; `liveness`: kopf's probe URL.

    Unless `standalone`, it peers with the other bridges and acts only while it is the active one.
    """
    # What `kopf run` does first: log format, and the handler that turns object
    # log records (handler errors among them) into Kubernetes Events.
    kopf.configure(log_format=kopf.LogFormat.PLAIN)
    # Lazy: the bridge watches even while Temporal is down; handlers fail and are retried until it answers.
    client = await connect(settings, lazy=True)
    meter = metrics_runtime(settings.metrics).metric_meter if settings.metrics else MetricMeter.noop
    reconciler = Reconciler(client, settings.task_queue, kubernetes=True)
    if not standalone:
        await peering.ensure_peering(KubeConnection(settings.kubeconfig), namespaces)
    await kopf.operator(
        registry=registry(),
        settings=operator_settings(),
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        memo=kopf.Memo(
            reconciler=reconciler, metrics=HandlerMetrics(meter), in_flight=asyncio.Semaphore(IN_FLIGHT)
        ),
        stop_flag=stop,
        ready_flag=ready,
        standalone=standalone,
        peering_name=None if standalone else peering.NAME,  # named: mandatory, so it starts paused
        liveness_endpoint=liveness,
    )
