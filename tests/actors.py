"""Weighted operation registries for the stress tests (sortedcontainers' style: random operations
against a simple model, the invariants checked after each)."""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., None])


def registry() -> tuple[list[Callable[..., None]], Callable[[int], Callable[[F], F]]]:
    """``(actors, actor)``: ``@actor(weight)`` adds an operation ``weight`` times to ``actors``, so
    that ``random.choice(actors)`` picks it ``weight`` times as often as a weight-1 one."""
    actors: list[Callable[..., None]] = []

    def actor(weight: int) -> Callable[[F], F]:
        def register(function: F) -> F:
            actors.extend([function] * weight)
            return function

        return register

    return actors, actor
