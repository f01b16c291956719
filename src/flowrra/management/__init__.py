"""The management API: :class:`FlowrraManager` reads and operates an app (see
``docs/management.md``)."""

from flowrra.management.manager import RESULT_COUNT_CAP, FlowrraManager

__all__ = ["RESULT_COUNT_CAP", "FlowrraManager"]
