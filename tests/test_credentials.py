"""Password derivation must match any other implementation of the rule bit for bit.

The reference here is OpenSSL, driven as a separate process, so the test does
not share a single line of HMAC or base64 code with the runner.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from persona_runner.credentials import DEV_SECRET, derive_password, seed_secret
from persona_runner.util.errors import UserError

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def openssl_password(email: str, secret: str) -> str:
    """The rule, as a shell user would compute it: `openssl dgst -hmac | openssl base64`, then filter."""
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"],
        input=email.encode("utf-8"),
        capture_output=True,
        check=True,
    ).stdout
    encoded = subprocess.run(["openssl", "base64", "-A"], input=digest, capture_output=True, check=True).stdout.decode(
        "ascii"
    )
    return "".join(ch for ch in encoded if ch.isascii() and ch.isalnum())[:32]


@needs_openssl
@pytest.mark.parametrize(
    ("email", "secret"),
    [
        ("maya.okafor@ashgrove-road.test", DEV_SECRET),
        ("gremlin@chaos.invalid", DEV_SECRET),
        ("helena.brandt@lanternfish.example", "a-real-secret-from-the-vault"),
        ("zoë@example.test", DEV_SECRET),
        ("zoë@example.test", "geheimnis-ü-🔑"),
        ("山田.太郎@例え.test", "秘密"),
        ("MAYA.OKAFOR@ashgrove-road.test", DEV_SECRET),
    ],
)
def test_matches_openssl(email: str, secret: str) -> None:
    assert derive_password(email, secret) == openssl_password(email, secret)


@pytest.mark.parametrize(
    ("email", "secret", "password"),
    [
        # Computed once with openssl; they catch a change of the rule where openssl is absent.
        ("maya.okafor@ashgrove-road.test", DEV_SECRET, "He3EwRGoQq4AYpfBZHcpB7isZJoeeFQE"),
        ("zoë@example.test", "geheimnis-ü-🔑", "8duICVyIYeoVExYCyC34WQKePqYvDpua"),
    ],
)
def test_pinned_vectors(email: str, secret: str, password: str) -> None:
    assert derive_password(email, secret) == password


def test_password_is_32_alphanumerics_and_depends_on_both_inputs() -> None:
    password = derive_password("sam.adeyemi@ashgrove-road.test", DEV_SECRET)
    assert len(password) == 32 and password.isascii() and password.isalnum()
    assert derive_password("sam.adeyemi@ashgrove-road.test", "other") != password
    assert derive_password("maya.okafor@ashgrove-road.test", DEV_SECRET) != password


def test_secret_defaults_to_development_secret() -> None:
    assert seed_secret({}) == DEV_SECRET
    assert seed_secret({"PERSONA_ENV": "development"}) == DEV_SECRET


def test_secret_from_environment_is_used_verbatim() -> None:
    assert seed_secret({"PERSONA_SEED_SECRET": " s3cret ü "}) == " s3cret ü "
    assert seed_secret({"PERSONA_SEED_SECRET": "s3cret", "PERSONA_ENV": "production"}) == "s3cret"


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_secret_is_refused(value: str) -> None:
    with pytest.raises(UserError) as caught:
        seed_secret({"PERSONA_SEED_SECRET": value})
    assert "PERSONA_SEED_SECRET is set but empty" in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "env",
    [
        {"PERSONA_ENV": "production"},
        {"PERSONA_ENV": "Production"},
        {"PERSONA_ENV": "production", "PERSONA_SEED_SECRET": DEV_SECRET},
    ],
)
def test_production_refuses_the_development_secret(env: dict[str, str]) -> None:
    with pytest.raises(UserError) as caught:
        seed_secret(env)
    message = str(caught.value)
    assert "\n" not in message
    assert "PERSONA_ENV=production" in message and "set PERSONA_SEED_SECRET" in message
    assert caught.value.exit_code == 2


def test_reads_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_SEED_SECRET", "from-the-environment")
    assert seed_secret() == "from-the-environment"
