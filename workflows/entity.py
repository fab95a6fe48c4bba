"""What the six entity workflows share: one resource, its state across runs, its status published.

Rig, BeadStore, Polecat, Convoy, Refinery and Witness each subclass `Entity`
and keep only their kind's policy. The base holds:

- the resource as last applied, the state a run hands to the next, and
  whether the entity is new (`fresh`: no `apply` taken yet);
- `take`, the half of every `apply` update that is the same for all kinds:
  the uid kept, created/configured/unchanged, the spec's memo;
- the `delete` signal (kept in the state, so a delete that comes while a run
  rolls over is not lost) and the `status` query;
- `set_phase` and `publish`: the one place a phase changes and the one way a
  status goes out (search attribute, memo, the CR and its Event);
- `begin` and `roll_over`: publishing for the run's life; continuing as new
  once nothing is in flight.

Temporal takes handlers from base classes, but decodes a payload into the
type its handler's parameter names: so `apply` and `status` are made for each
kind, typed by its resource and status (`Entity.__init_subclass__`), and
`@workflow.init` stays on each kind's `__init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, Literal, NoReturn, Protocol, TypeVar, get_args, get_origin

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts import attributes
    from contracts.status import EventNote
    from crds.common import ApiModel, ObjectMeta
    from workflows.history import continue_as_new
    from workflows.publisher import StatusPublisher

# What earlier versions did, kept for their histories (a new worker replays a run an old one
# began): a run that began before these patches keeps the old habit until it continues as new.
SPEC_MEMO_ON_CHANGE = "entity-spec-memo-on-change"  # was: on every apply (four kinds)
PHASE_ATTRIBUTE_ON_CHANGE = "entity-phase-attribute-on-change"  # was: at every set or publish


class EntityState(BaseModel):
    """The part of every kind's state (what a run hands to the next) that the base keeps."""

    deleted: bool = False  # the resource is gone: the workflow cleans up and ends


class _Resource(Protocol):
    @property
    def metadata(self) -> ObjectMeta: ...
    @property
    def spec(self) -> ApiModel: ...


class _State(Protocol):
    deleted: bool

    @property
    def status(self) -> Any: ...  # the kind's status model, with its `phase`


R = TypeVar("R", bound=_Resource)
S = TypeVar("S", bound=_State)


def apply_outcome(fresh: bool, before: ApiModel, after: ApiModel) -> str:
    """What an `apply` did, as kubectl says it: created, configured or unchanged."""
    if fresh:
        return "created"
    return "unchanged" if after == before else "configured"


class Entity(Generic[R, S]):
    """The base of an entity workflow: `class PolecatWorkflow(Entity[Polecat, PolecatState])`.

    A subclass gets, typed by those two: the `apply` update (whose validator is `check_apply`
    and whose kind's part is `applied`), the `delete` signal and the `status` query.
    """

    # The input field that carries the resource (`polecat`, `rig`, ...): a run hands it on.
    RESOURCE_FIELD: ClassVar[str]
    # The habits of earlier versions (see the patches above): the spec memo written on every
    # apply, not only on a change; the phase search attribute set, beyond a change of phase, at
    # every set_phase ("set") or at every publish ("publish").
    SPEC_MEMO_ALWAYS_BEFORE: ClassVar[bool] = False
    PHASE_ATTRIBUTE_BEFORE: ClassVar[Literal["change", "set", "publish"]] = "change"
    # Made for each subclass by __init_subclass__ (below).
    apply: ClassVar[Any]
    status: ClassVar[Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the kind its `apply` update and `status` query, typed by its resource and status:
        Temporal decodes a payload into the type its handler's parameter names."""
        super().__init_subclass__(**kwargs)
        bases = getattr(cls, "__orig_bases__", ())  # Entity[Polecat, PolecatState], as written
        resource_type, state_type = next(get_args(base) for base in bases if get_origin(base) is Entity)

        def apply(self: Entity[Any, Any], resource: Any) -> str:
            """Take a new spec; returns created, configured or unchanged (as kubectl says)."""
            before = self.resource
            return self.applied(before, self.take(resource))

        def check(self: Entity[Any, Any], resource: Any) -> None:
            self.check_apply(resource)

        def status(self: Entity[Any, Any]) -> Any:
            return self.state.status

        apply.__annotations__ = check.__annotations__ = {"resource": resource_type}
        apply.__annotations__["return"] = str
        status.__annotations__ = {"return": state_type.model_fields["status"].annotation}
        update = workflow.update(apply)
        update.validator(check)
        cls.apply, cls.status = update, workflow.query(status)

    def __init__(self, input: Any, first: S) -> None:
        """From the run's input (the resource, the state a run handed on, where the status goes);
        `first` is the state of a new entity."""
        self.resource: R = getattr(input, self.RESOURCE_FIELD)
        self.state: S = input.state or first
        self.fresh = input.state is None
        self.publisher = StatusPublisher(input.status_target)

    @property
    def deleted(self) -> bool:
        return self.state.deleted

    @workflow.signal
    def delete(self) -> None:
        """The resource is gone: clean up what it made, then end."""
        self.state.deleted = True

    def check_apply(self, resource: R) -> None:
        """The validator of `apply` (nothing is taken when it raises): by default, a resource
        serves the rig it was made for, for life."""
        before, after = (getattr(r.spec, "rig_ref", None) for r in (self.resource, resource))
        if after != before:
            kind = type(resource).__name__
            raise ApplicationError(
                f"spec.rigRef: cannot change ({before} -> {after}); delete the {kind} and create it for the other rig",
                type="InvalidChange",
                non_retryable=True,
            )

    def applied(self, before: R, outcome: str) -> str:
        """The kind's part of an `apply`, once the new spec is taken; returns the outcome."""
        return outcome

    def take(self, resource: R) -> str:
        """The new spec, from an `apply`: created, configured or unchanged (as kubectl says)."""
        resource.metadata.uid = self.resource.metadata.uid
        outcome = apply_outcome(self.fresh, self.resource.spec, resource.spec)
        self.fresh = False
        self.resource = resource
        # A new resource's spec is in the memo its workflow started with.
        if outcome == "configured" or (
            self.SPEC_MEMO_ALWAYS_BEFORE and not workflow.patched(SPEC_MEMO_ON_CHANGE)
        ):
            workflow.upsert_memo({attributes.MEMO_SPEC: resource.spec.to_wire()})
        return outcome

    def begin(self, publish: bool) -> None:
        """The first thing a run does: start sending statuses (and send the first when `publish`)."""
        self.publisher.start()
        if publish:
            self.publish(None)

    def set_phase(self, phase: str, *events: EventNote | None) -> None:
        """The one place a phase changes: the status, the search attribute, the memo and the CR."""
        status = self.state.status
        changed = phase != status.phase
        status.phase = phase
        if self._old_habit("set") or (changed and not self._old_habit("publish")):
            workflow.upsert_search_attributes([attributes.PHASE.value_set(phase)])
        self.publish(*events)

    def publish(self, *events: EventNote | None) -> None:
        """The status where people look: the memo (`gastown get`), and the CR with these Events."""
        if self._old_habit("publish"):
            workflow.upsert_search_attributes([attributes.PHASE.value_set(self.state.status.phase)])
        generation = self.resource.metadata.generation
        notes = [event for event in events if event is not None]
        self.publisher.publish(self.state.status, generation, notes[0] if notes else None)
        for note in notes[1:]:
            self.publisher.offer(self.state.status.to_wire(), generation, note)

    async def roll_over(self, input: BaseModel, settled: Callable[[], bool] = lambda: True) -> NoReturn:
        """Continue as new with the resource and state as they are then, once no handler runs,
        every status offered is sent and `settled` holds: nothing a person sent is dropped (a
        delete included: it is in the state), and the CR shows the latest status."""
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and self.publisher.idle() and settled()
        )
        self.publisher.stop()
        continue_as_new(input.model_copy(update={self.RESOURCE_FIELD: self.resource, "state": self.state}))

    def _old_habit(self, moment: Literal["set", "publish"]) -> bool:
        """This kind set the phase attribute at every `moment`, and this run began before the patch."""
        return moment == self.PHASE_ATTRIBUTE_BEFORE and not workflow.patched(PHASE_ATTRIBUTE_ON_CHANGE)
