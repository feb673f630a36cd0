"""Browser sessions for the DRF browsable API served through the gateway.

A person opens ``/api/playlists`` in a browser. The HTML pages are rendered by the services
(DRF's ``BrowsableAPIRenderer``) and passed through by the proxy; this app lets that person sign
in and out from those pages without weakening the bearer-token API.

Design (and why):

* **Login** (``GET/POST /api/browser/login``, DRF's own login template): the gateway posts the
  credentials to the auth service's ``/api/auth/login`` through its own upstream session (breaker,
  timeouts and metrics as for proxied calls), verifies the returned access token like any other
  (RS256, JWKS, revocation), then sets:

  - ``gateway_access``: the access token. ``HttpOnly`` (no script, so no XSS, can read it),
    ``SameSite=Lax`` (not sent on cross-site sub-requests or cross-site POSTs, still sent when
    the user follows a link to the API), ``Secure`` when the request came over HTTPS or
    ``BROWSER_COOKIE_SECURE=true``, ``Path=/api``, lifetime = the token's remaining validity.
  - ``gateway_refresh``: the refresh token, ``HttpOnly``, ``SameSite=Strict``, ``Path=/api/browser``
    (only ever sent to the login/logout views, never to the proxied API), so logout can revoke it.
  - Django's CSRF cookie ``gateway_csrftoken`` is rotated (login CSRF and fixation).

  ``next`` is followed only when it is a local path (``/...``, same host), else ``/api/playlists``.

* **Cookie accepted for HTML requests only** (``browser.authentication``): the proxy accepts the
  cookie only when the request's ``Accept`` asks for ``text/html`` (page loads and the browsable
  API's own forms). JSON clients must send ``Authorization: Bearer``; a bearer header always wins
  over the cookie. That keeps the cookie out of the machine API: a script cannot use a victim's
  cookie to read JSON, and the API stays stateless for every other client.

* **CSRF on unsafe methods** whenever the cookie authenticated the request: Django's CSRF check
  (DRF ``SessionAuthentication``-style ``enforce_csrf``) wants the ``csrfmiddlewaretoken`` form
  field or the ``X-CSRFToken`` header to match the ``gateway_csrftoken`` cookie (and, on HTTPS,
  a same-origin Referer/Origin). The pages are rendered by the services, which know nothing of
  the gateway's CSRF secret, so for cookie sessions the gateway puts its own (masked) token into
  the page it passes back: the forms' ``csrfmiddlewaretoken`` fields and the ``csrfToken`` DRF's
  JavaScript sends as ``X-CSRFToken``. It also adds a "Log out" button to the page's navbar.
  The request then goes upstream without the gateway's cookies and without ``X-CSRFToken``,
  with the signed user context as for bearer calls (the services never see a browser token).

* **Not signed in**: an HTML request without valid credentials on a protected route gets a 401
  HTML page (DRF look) with a "Log in" link to ``/api/browser/login?next=<path>``; JSON clients
  keep getting the JSON 401.

* **Logout** (``POST /api/browser/logout``, CSRF-checked): puts the access token's ``jti`` on the
  gateway's revocation list first (``proxy.revocation.token_revoke``, same as API logout), then
  revokes the refresh token at the auth service (``/api/auth/logout``, as the API logout does),
  clears the cookies and rotates the CSRF token. The cookies are cleared even when auth is down;
  when the revocation cannot be stored (Redis), 503 with ``Retry-After``, auth is not called and
  the cookies are kept (still signed in, the user can retry).
"""
