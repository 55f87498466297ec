"""Who may change the shared gallery: the owner, with the admin token ``$MBM_ADMIN_TOKEN`` (a Space secret)."""

from __future__ import annotations

import hmac
import os

from mbm.preprocess import InputError

ADMIN_TOKEN_ENV = "MBM_ADMIN_TOKEN"  # the owner's secret (a Space secret): changes the shared gallery


class NotAllowed(InputError):
    """A gallery change that needs the owner's admin token."""


def admin_token_ok(token) -> bool:
    """True when ``token`` equals ``$MBM_ADMIN_TOKEN`` (compared in constant time); never when unset."""
    expected = os.environ.get(ADMIN_TOKEN_ENV, "")
    return bool(expected) and isinstance(token, str) and hmac.compare_digest(token.encode(), expected.encode())


def check_admin(token) -> None:
    """A :class:`NotAllowed` unless ``token`` is the owner's (or when the owner has set none)."""
    if not os.environ.get(ADMIN_TOKEN_ENV):
        raise NotAllowed(f"changing the shared gallery is switched off: the owner has not set {ADMIN_TOKEN_ENV}")
    if not admin_token_ok(token):
        raise NotAllowed("the admin token is wrong; only the owner can change the shared gallery")
