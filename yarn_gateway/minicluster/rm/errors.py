"""Errors the RM REST API reports, rendered like Hadoop's GenericExceptionHandler.

Body: ``{"RemoteException":{"exception":..., "message":..., "javaClassName":...}}``.
``BadRequestException(String)`` and ``NotFoundException(String)`` wrap their text in a
``java.lang.Exception``, hence the ``java.lang.Exception: `` prefix of their messages.
"""

from __future__ import annotations


class RemoteError(Exception):
    """An error answered as a RemoteException JSON body with ``status``."""

    def __init__(self, status: int, exception: str, java_class: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.exception = exception
        self.java_class = java_class
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {
            "RemoteException": {
                "exception": self.exception,
                "message": self.message,
                "javaClassName": self.java_class,
            }
        }


def bad_request(text: str) -> RemoteError:
    """``new BadRequestException(text)``: 400 with the ``java.lang.Exception: `` prefix."""
    return RemoteError(
        400, "BadRequestException", "org.apache.hadoop.yarn.webapp.BadRequestException",
        f"java.lang.Exception: {text}",
    )


def bad_request_from_illegal_argument(text: str) -> RemoteError:
    """``new BadRequestException(IllegalArgumentException)``: message is the cause's toString()."""
    return RemoteError(
        400, "BadRequestException", "org.apache.hadoop.yarn.webapp.BadRequestException",
        f"java.lang.IllegalArgumentException: {text}",
    )


def illegal_argument(text: str) -> RemoteError:
    """A bare IllegalArgumentException escaping a resource method (e.g. ``Enum.valueOf``)."""
    return RemoteError(400, "IllegalArgumentException", "java.lang.IllegalArgumentException", text)


def not_found(text: str) -> RemoteError:
    return RemoteError(
        404, "NotFoundException", "org.apache.hadoop.yarn.webapp.NotFoundException",
        f"java.lang.Exception: {text}",
    )


def authorization(text: str, status: int = 403) -> RemoteError:
    """Hadoop's AuthorizationException (proxyuser refusals: 403 from the auth filter)."""
    return RemoteError(
        status, "AuthorizationException",
        "org.apache.hadoop.security.authorize.AuthorizationException", text,
    )
