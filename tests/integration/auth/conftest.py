from __future__ import annotations

import pytest

from auth_service.settings import Settings
from tests.authenticator import SoftAuthenticator


@pytest.fixture
def device(settings: Settings) -> SoftAuthenticator:
    """A software passkey authenticator at the app's (first) WebAuthn origin."""
    return SoftAuthenticator(origin=settings.mfa.origins[0])
