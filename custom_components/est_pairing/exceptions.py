"""Library errors, translated once into Home Assistant exceptions."""

from __future__ import annotations

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .const import DOMAIN
from .est.errors import EstError, MalformedRequest, NotAllowed


class AlreadyPaired(ServiceValidationError):
    """An appliance with this id is paired or pre-registered: the owner removes it first."""

    def __init__(self, appliance_id: str) -> None:
        super().__init__(
            translation_domain=DOMAIN,
            translation_key="already_paired",
            translation_placeholders={"appliance_id": appliance_id},
        )


class NotSaved(HomeAssistantError):
    """The owner's decision took effect, but the approvals could not be written (a full disk)."""

    def __init__(self, appliance_id: str, revoked: int) -> None:
        super().__init__(
            translation_domain=DOMAIN,
            translation_key="revoked_not_saved",
            translation_placeholders={"appliance_id": appliance_id, "count": str(revoked)},
        )


def translated(err: EstError) -> HomeAssistantError:
    """A translated exception for a library error: the owner's mistakes are validation errors."""
    if isinstance(err, MalformedRequest):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_input",
            translation_placeholders={"reason": str(err)},
        )
    if isinstance(err, NotAllowed):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_request",
            translation_placeholders={"reason": str(err)},
        )
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="operation_failed",
        translation_placeholders={"reason": str(err)},
    )
