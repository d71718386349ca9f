"""Repair flows: re-issue the listener certificate when Home Assistant's addresses changed."""

from __future__ import annotations

from typing import Any

from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.core import HomeAssistant

try:  # newer Home Assistant releases name the result type of repair flows
    from homeassistant.components.repairs import (  # type: ignore[attr-defined, unused-ignore]
        RepairsFlowResult,
    )
except ImportError:  # Home Assistant 2025.4 has no such name
    from homeassistant.data_entry_flow import (  # type: ignore[assignment, unused-ignore]
        FlowResult as RepairsFlowResult,
    )

from .const import ISSUE_LISTENER_NAMES
from .runtime import hub_runtime


class ReissueListenerCertificateFlow(ConfirmRepairFlow):
    """Confirm, then cover the current names and addresses with a new listener certificate."""

    ISSUE_ID = ISSUE_LISTENER_NAMES

    async def async_step_confirm(self, user_input: dict[str, str] | None = None) -> RepairsFlowResult:
        """Re-issue on confirmation."""
        if user_input is not None:
            runtime = hub_runtime(self.hass)
            if runtime is None:
                return self.async_abort(reason="not_running")
            try:
                await runtime.async_reissue_listener_certificate()
            except OSError:  # not saved, so not used: the listener keeps its certificate
                return self.async_abort(reason="not_saved")
            return self.async_create_entry(data={})
        return await super().async_step_confirm()  # the form, with the issue's placeholders ({names})


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, Any] | None
) -> RepairsFlow:
    """The only fixable issue is the listener certificate's names."""
    return ReissueListenerCertificateFlow()
