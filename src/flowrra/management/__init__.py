"""The management API: :class:`FlowrraManager` reads and operates an app (see
``docs/management.md``)."""

from flowrra.management.manager import FlowrraManager

__all__ = ["FlowrraManager"]
