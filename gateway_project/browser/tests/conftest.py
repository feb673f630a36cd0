"""The proxy's fixtures (fake upstream with the test key's JWKS, token factory), reused."""

from proxy.tests.conftest import (  # noqa: F401
    fake,
    make_token,
    public_pem,
    rsa_key,
)
