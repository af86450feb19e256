"""Errors the emulator returns. Messages carry the fragments real clients match on
(see ../shared/reference/flasharray-rest.md §5): ``does not exist``, ``already exists``,
``has been destroyed``, ``not destroyed``, ``is not connected``, ``already belongs to``, ``connected``…"""

from __future__ import annotations


class ApiError(Exception):
    """A logical error: HTTP 400 on both REST 1 and REST 2."""

    def __init__(self, message: str, context: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.context = context
        self.status = status


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(f"{kind} does not exist.", name)


def exists(kind: str, name: str) -> ApiError:
    return ApiError(f"{kind} already exists.", name)


def destroyed(kind: str, name: str) -> ApiError:
    return ApiError(f"{kind} has been destroyed.", name)


def invalid(message: str, context: str | None = None) -> ApiError:
    return ApiError(message, context)


def not_destroyed(kind: str, name: str, action: str = "") -> ApiError:
    """Recover or eradicate of a live object. The message carries the fragment ``not destroyed`` (§5)."""
    return ApiError(f"{kind} is not destroyed.{' ' + action if action else ''}", name)
