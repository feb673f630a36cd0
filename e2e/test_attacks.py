"""Attacks against the running platform: each asserts its 4xx and proves nothing changed.

Forged and broken tokens at the gateway, forged user contexts straight at each service's port,
every playlist operation on another user's playlist, hostile bodies and headers. Rows of
docs/security.md name these tests.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from pathlib import Path

import jwt
import pytest
from conftest import settle
from context_auth import SignedContext
from cryptography.hazmat.primitives import serialization

from common import context

pytestmark = pytest.mark.e2e


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def victim(platform, api, user):
    """The user, with one playlist of their own; `state()` is what every attack must not move."""
    made = api.post(
        f"{platform.gateway}/api/playlists",
        json={"name": "mine", "tracks": [{"title": "So What", "genre": "jazz"}]},
        headers=bearer(user["token"]),
        timeout=10,
    )
    assert made.status_code == 201
    user["playlist"] = made.json()

    def state():
        listed = api.get(
            f"{platform.gateway}/api/playlists", headers=bearer(user["token"]), timeout=10
        ).json()
        return [(p["id"], p["name"], len(p["tracks"])) for p in listed["results"]]

    user["state"] = state
    user["before"] = state()
    return user


@pytest.fixture
def signing_key(platform):
    """Auth's private key (this run's state folder) and its kid, to forge tokens that differ
    from real ones in exactly one claim."""
    pem = (Path(platform.env["STATE_DIR"]) / "jwt" / "private.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def forged_tokens(token, key):
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())

    def signed(**changes):
        return jwt.encode(
            {**claims, **changes, "jti": uuid.uuid4().hex},
            key,
            algorithm="RS256",
            headers={"kid": header["kid"]},
        )

    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = b64(json.dumps(claims).encode())
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode())
    import hashlib
    import hmac

    hs_signature = b64(hmac.new(public, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return {
        "malformed": "not.a.jwt",
        "garbage": "x" * 300,
        "bad signature": f"{head}.{body}.{flipped}",
        "expired": signed(exp=now - 60, iat=now - 1000),
        "not yet valid": signed(nbf=now + 3600),
        "alg none": f"{none_header}.{payload}.",
        "HS256 with the public key": f"{hs_header}.{payload}.{hs_signature}",
        "wrong iss": signed(iss="someone-else"),
        "wrong aud": signed(aud="another-audience"),
        "refresh as access": signed(token_type="refresh"),
        "unknown kid": jwt.encode(
            {**claims, "jti": uuid.uuid4().hex}, key, algorithm="RS256", headers={"kid": "nope"}
        ),
    }


def test_forged_and_broken_tokens_are_401_and_write_nothing(platform, api, victim, signing_key):
    gw = platform.gateway
    for name, token in forged_tokens(victim["token"], signing_key).items():
        read = api.get(f"{gw}/api/playlists", headers=bearer(token), timeout=10)
        assert read.status_code == 401, (name, read.status_code, read.text)
        assert read.json()["code"], name
        write = api.post(
            f"{gw}/api/playlists", json={"name": f"by {name}"}, headers=bearer(token), timeout=10
        )
        assert write.status_code == 401, (name, write.status_code)
    assert victim["state"]() == victim["before"]


def test_a_revoked_token_is_401(platform, api, victim):
    gw, auth = platform.gateway, bearer(victim["token"])
    out = api.post(
        f"{gw}/api/auth/logout", json={"refresh": victim["refresh"]}, headers=auth, timeout=10
    )
    assert out.status_code == 204
    assert (
        api.post(
            f"{gw}/api/playlists", json={"name": "after logout"}, headers=auth, timeout=10
        ).status_code
        == 401
    )
    fresh = api.post(
        f"{gw}/api/auth/login",
        json={"username": victim["username"], "password": victim["password"]},
        timeout=10,
    ).json()["token"]
    victim["token"] = fresh
    assert victim["state"]() == victim["before"]


@pytest.mark.parametrize("service", ["auth", "playlist", "analysis"])
def test_forged_user_contexts_straight_to_a_service_are_401(platform, api, victim, service):
    path = {"auth": "/api/auth/me", "playlist": "/api/playlists", "analysis": "/api/analysis"}
    url = platform.url(service, path[service])
    who = {"id": victim["id"], "username": victim["username"]}
    value = context.encode_user(who)
    genuine = SignedContext(service, who)
    other_service = "playlist" if service != "playlist" else "analysis"
    attempts = {
        "no signature": {"X-User": value},
        "bad signature": {"X-User": value, "X-User-Signature": "t=1,n=1,v2=00"},
        "the old v1 form": {"X-User": value, "X-User-Signature": "t=1,v1=" + "0" * 64},
        "signed with another key": SignedContext(service, who, key="not-ours").headers(
            "GET", path[service]
        ),
        "signed for another service": SignedContext(other_service, who).headers(
            "GET", path[service]
        ),
        "addressed to another service": SignedContext(service, who, audience=other_service).headers(
            "GET", path[service]
        ),
        "an hour old": SignedContext(service, who, now=time.time() - 3600).headers(
            "GET", path[service]
        ),
        "signed for another path": genuine.headers("GET", path[service] + "/elsewhere"),
        "signed for another method": genuine.headers("DELETE", path[service]),
        "signed for another query": genuine.headers("GET", path[service] + "?limit=1"),
        "another user in a genuine signature": {
            "X-User": context.encode_user({"id": "999999", "username": "x"}),
            "X-User-Signature": genuine.headers("GET", path[service])["X-User-Signature"],
        },
        "garbage": {"X-User": "{not json", "X-User-Signature": "garbage"},
    }
    for name, headers in attempts.items():
        response = api.get(url, headers=headers, timeout=10)
        assert response.status_code == 401, (service, name, response.status_code)
    assert api.get(url, auth=genuine, timeout=10).status_code == 200  # the control
    if service == "playlist":
        posted = api.post(
            url, json={"name": "forged"}, headers=attempts["bad signature"], timeout=10
        )
        assert posted.status_code == 401
    assert victim["state"]() == victim["before"]


def test_a_replayed_write_context_is_401_and_changes_nothing(platform, api, victim):
    """A captured context of a write (say, a compromised service or a log replays it) works
    once: the same request again, or its body or path changed, is refused."""
    who = {"id": victim["id"], "username": victim["username"]}
    url = platform.url("playlist", "/api/playlists")
    body = json.dumps({"name": "replayed"}).encode()
    headers = {
        **SignedContext("playlist", who).headers("POST", "/api/playlists", body),
        "Content-Type": "application/json",
    }
    first = api.post(url, data=body, headers=headers, timeout=10)
    assert first.status_code == 201, first.text
    after_first = victim["state"]()
    replay = api.post(url, data=body, headers=headers, timeout=10)
    assert replay.status_code == 401
    assert replay.json()["detail"] == context.ERROR_REPLAYED
    other_body = api.post(url, data=b'{"name":"other"}', headers=headers, timeout=10)
    assert other_body.status_code == 401
    playlist_id = first.json()["id"]
    moved = api.delete(f"{url}/{playlist_id}", headers=headers, timeout=10)
    assert moved.status_code == 401
    assert victim["state"]() == after_first
    assert api.delete(
        f"{url}/{playlist_id}", auth=SignedContext("playlist", who), timeout=10
    ).status_code in (200, 204)
    assert victim["state"]() == victim["before"]


def test_every_playlist_operation_on_another_users_playlist_is_404(platform, api, victim):
    gw = platform.gateway
    other = api.post(
        f"{gw}/api/auth/register",
        json={"username": f"e2e_{uuid.uuid4().hex[:10]}", "password": "another long password 9"},
        timeout=10,
    ).json()["token"]
    target = f"{gw}/api/playlists/{victim['playlist']['id']}"
    calls = [
        ("get", target, None),
        ("put", target, {"name": "taken", "tracks": []}),
        ("patch", target, {"name": "taken"}),
        ("delete", target, None),
        ("post", f"{target}/plays", {"track": 0}),
    ]
    for method, url, body in calls:
        response = getattr(api, method)(url, json=body, headers=bearer(other), timeout=10)
        assert response.status_code == 404, (method, response.status_code)
    assert victim["state"]() == victim["before"]
    stats = api.get(f"{gw}/api/analysis", headers=bearer(victim["token"]), timeout=10).json()
    assert stats["plays"] == 0


def test_hostile_bodies_are_4xx_and_write_nothing(platform, api, victim):
    gw, auth = platform.gateway, bearer(victim["token"])
    json_headers = {**auth, "Content-Type": "application/json"}
    target = f"{gw}/api/playlists/{victim['playlist']['id']}"
    bodies = {
        "operator in a field": ({"name": {"$gt": ""}}, 400),
        "operator as a key": ({"$set": {"owner_id": "1"}, "name": "x"}, None),
        "wrong type": ({"name": ["a", "b"]}, 400),
        "tracks not a list": ({"name": "x", "tracks": "everything"}, 400),
        "10,000 tracks": ({"name": "x", "tracks": [{"title": "t"}] * 10_000}, 400),
    }
    for name, (body, expected) in bodies.items():
        response = api.post(f"{gw}/api/playlists", json=body, headers=auth, timeout=10)
        if expected is None:  # unknown keys are ignored: the owner never comes from the body
            assert response.status_code in (201, 400), name
            if response.status_code == 201:
                assert response.json()["name"] == "x"
                api.delete(f"{gw}/api/playlists/{response.json()['id']}", headers=auth, timeout=10)
            continue
        assert response.status_code == expected, (name, response.status_code, response.text[:200])
    raw = {
        "invalid UTF-8": b'{"name": "\xff\xfe"}',
        "not JSON": b"{name: 1",
        "huge number": b'{"track": 1' + b"0" * 5000 + b"}",
        "huge float": b'{"track": 1e999999}',
    }
    for name, data in raw.items():
        url = f"{target}/plays" if "number" in name or "float" in name else f"{gw}/api/playlists"
        response = api.post(url, data=data, headers=json_headers, timeout=10)
        assert 400 <= response.status_code < 500, (name, response.status_code)
    huge = api.post(
        f"{gw}/api/playlists",
        data=b'{"name": "' + b"a" * (10 * 1024 * 1024) + b'"}',
        headers={**json_headers, "Connection": "close"},
        timeout=30,
    )
    assert huge.status_code == 413
    assert victim["state"]() == victim["before"]
    stats = api.get(f"{gw}/api/analysis", headers=auth, timeout=10).json()
    assert stats["plays"] == 0


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_oversized_and_odd_headers_are_refused_or_neutralised(platform, api, victim):
    port = platform.ports["gateway"]
    huge = raw_request(
        port,
        b"GET /api/playlists HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
        + b"a" * 20_000
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert huge.split(b"\r\n", 1)[0].split()[1] in (b"400", b"431"), huge[:200]
    # A request id that is not a short token is replaced, never echoed into the answer.
    for bad in ("<script>alert(1)</script>", "a" * 500, "id\twith\ttabs"):
        response = api.get(
            f"{platform.gateway}/api/playlists",
            headers={**bearer(victim["token"]), "X-Request-ID": bad},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] != bad
    # A header line split with a bare LF cannot smuggle a second header into the answer.
    smuggled = raw_request(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: abc\nSet-Cookie: x=1"
        b"\r\nConnection: close\r\n\r\n",
    )
    assert b"set-cookie: x=1" not in smuggled.lower()
    assert victim["state"]() == victim["before"]


def sign_in(platform, api, user) -> dict[str, str]:
    """Another device of ``user``: a login of its own."""
    answer = api.post(
        f"{platform.gateway}/api/auth/login",
        json={"username": user["username"], "password": user["password"]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["token"])


def test_a_deleted_accounts_other_device_writes_nothing(platform, api, user):
    """The phone deletes the account; the laptop's access token (never presented to the
    deletion) creates nothing, plays nothing, and no analytics row of the user comes back."""
    gw = platform.gateway
    phone, laptop = sign_in(platform, api, user), sign_in(platform, api, user)
    made = api.post(
        f"{gw}/api/playlists",
        json={"name": "before", "tracks": [{"title": "t", "genre": "rock"}]},
        headers=laptop,
        timeout=10,
    )
    assert made.status_code == 201
    playlist = made.json()["id"]
    deleted = api.delete(
        f"{gw}/api/auth/me", json={"current_password": user["password"]}, headers=phone, timeout=10
    )
    assert deleted.status_code == 204, deleted.text
    for method, path, body in [
        ("POST", "/api/playlists", {"name": "after"}),
        ("POST", f"/api/playlists/{playlist}/plays", {"track": 0}),
        ("GET", "/api/analysis", None),
    ]:
        answer = api.request(method, f"{gw}{path}", json=body, headers=laptop, timeout=10)
        assert answer.status_code == 401, (path, answer.status_code)
        assert answer.json()["code"] == "token_revoked"
    # Behind the gateway: a write of the account still on its way once UserDeleted is handled.
    who = {"id": user["id"], "username": user["username"]}
    direct = SignedContext("playlist", who)
    settle(
        lambda: (
            api.post(
                platform.url("playlist", "/api/playlists"), json={"name": "late"}, auth=direct
            ).status_code
        ),
        401,
    )
    listed = api.get(platform.url("playlist", "/api/playlists"), auth=direct, timeout=10).json()
    assert listed["count"] == 0
    stats = SignedContext("analysis", who)
    settle(
        lambda: api.get(platform.url("analysis", "/api/analysis"), auth=stats, timeout=10).json()[
            "playlists_created"
        ],
        0,
    )


def test_log_out_everywhere_ends_every_device(platform, api, user):
    gw = platform.gateway
    devices = [sign_in(platform, api, user) for _ in range(3)]
    refresh = api.post(
        f"{gw}/api/auth/login",
        json={"username": user["username"], "password": user["password"]},
        timeout=10,
    ).json()["refresh"]
    assert all(
        api.get(f"{gw}/api/playlists", headers=device, timeout=10).status_code == 200
        for device in devices
    )
    out = api.post(f"{gw}/api/auth/logout-all", headers=devices[0], timeout=10)
    assert out.status_code == 204, out.text
    for device in devices:
        answer = api.post(f"{gw}/api/playlists", json={"name": "x"}, headers=device, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["code"] == "token_revoked"
    assert api.post(
        f"{gw}/api/auth/refresh", json={"refresh": refresh}, timeout=10
    ).status_code == (401)
    again = sign_in(platform, api, user)  # signing in again works at once
    assert api.get(f"{gw}/api/playlists", headers=again, timeout=10).json()["count"] == 0
    # A password change ends every session too, the one that made it included.
    changed = api.patch(
        f"{gw}/api/auth/me",
        json={"password": "another horse battery staple 7", "current_password": user["password"]},
        headers=again,
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    assert api.get(f"{gw}/api/playlists", headers=again, timeout=10).status_code == 401
    user["password"] = "another horse battery staple 7"
    assert api.get(f"{gw}/api/playlists", headers=sign_in(platform, api, user), timeout=10).ok
