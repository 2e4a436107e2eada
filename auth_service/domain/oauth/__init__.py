"""OAuth 2.1 and OpenID Connect: the registered clients, the published documents (JWKS,
discovery) and the provider's endpoints."""
