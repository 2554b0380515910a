"""kopf settings gpumix derives from its configuration."""

from __future__ import annotations

import kopf

from gpumix.operator.settings import OperatorConfig, configure_kopf


def test_api_retries_ride_out_a_minute_of_outage_and_never_wait_long() -> None:
    # After an API-server outage the watches must come back soon after the server does:
    # kopf's default schedule slept up to 21 s between attempts.
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorConfig())
    backoffs = list(settings.networking.error_backoffs)  # type: ignore[arg-type]
    assert max(backoffs) <= 2.0
    assert sum(backoffs) >= 60.0
