"""The Gas Town API: pydantic models of the six kinds, the single source of truth.

`parse_resource` turns a manifest (a dict) into a typed resource or raises
`InvalidResource`, whose lines name the resource, the field and the rule.
"""

from crds.beadstore import BeadStore
from crds.common import API_VERSION, GROUP, VERSION, FieldError, Resource, parse_duration
from crds.convoy import Convoy
from crds.errors import InvalidResource
from crds.polecat import Polecat
from crds.refinery import Refinery
from crds.registry import KINDS, kind_for, parse_resource
from crds.rig import Rig
from crds.witness import Witness

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "BeadStore",
    "Convoy",
    "FieldError",
    "InvalidResource",
    "Polecat",
    "Refinery",
    "Resource",
    "Rig",
    "Witness",
    "kind_for",
    "parse_duration",
    "parse_resource",
]
