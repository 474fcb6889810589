"""Who is calling (authenticators) and what they may do (policy)."""

from .base import Authenticator, User

__all__ = ["Authenticator", "User"]
