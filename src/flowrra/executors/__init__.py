"""Executors: how a task call runs (IO on the event loop, CPU in child processes, or yours)."""

from flowrra.executors.base import BaseTaskExecutor
from flowrra.executors.cpu import CPUExecutor
from flowrra.executors.io import IOExecutor

__all__ = ["BaseTaskExecutor", "CPUExecutor", "IOExecutor"]
