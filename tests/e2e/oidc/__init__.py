"""Helpers of the OpenID Connect client tests (tests/e2e/test_oidc_clients.py): the npm
openid-client install and its relying-party script, a scripted browser for the sign-in form,
and a resource server that knows only our JWKS."""
