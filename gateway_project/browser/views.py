"""Browser login/logout pages, and the HTML 401 page the proxy shows to signed-out browsers."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST
from proxy.exceptions import RevocationUnavailable

from browser import services
from browser.forms import LoginForm

NOT_SIGNED_IN = "You are not signed in, or your session has ended."


def login_url(*, next_path: str) -> str:
    return f"{reverse('rest_framework:login')}?{urlencode({'next': next_path})}"


@never_cache
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """GET: DRF's login form. POST: sign in at auth, set the cookies, go to ``next``."""
    raw_next = request.POST.get("next") if request.method == "POST" else request.GET.get("next")
    next_path = services.safe_next(request=request, target=raw_next)
    form = LoginForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            session = services.browser_login(
                request=request,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
            )
        except services.LoginRefused as refused:
            form.add_error(None, refused.message)
            status = refused.status
        else:
            response = HttpResponseRedirect(next_path)
            services.cookies_set(
                request=request,
                response=response,
                token=session["token"],
                refresh=session["refresh"],
                exp=session["claims"]["exp"],
            )
            rotate_token(request)
            return response
    return render(request, "browser/login.html", {"form": form, "next": next_path}, status=status)


@never_cache
@csrf_protect
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Revoke the session's tokens, clear the cookies, go back to ``next`` (signed out).

    If the revocation cannot be stored: 503 with ``Retry-After``, cookies kept (still signed in).
    """
    try:
        services.browser_logout(request=request)
    except RevocationUnavailable as exc:
        response = HttpResponse(
            f"{exc.detail} You are still signed in.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(exc.wait)
        return response
    next_path = services.safe_next(request=request, target=request.POST.get("next"))
    response = HttpResponseRedirect(next_path)
    services.cookies_clear(response=response)
    rotate_token(request)
    return response


def unauthorized_page(*, request: HttpRequest, detail: str) -> HttpResponse:
    """401 in HTML for a browser: what happened, and a link to sign in and come back."""
    response = render(
        request,
        "browser/unauthorized.html",
        {
            "detail": detail,
            "message": NOT_SIGNED_IN,
            "login_url": login_url(next_path=request.get_full_path()),
        },
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    response["Cache-Control"] = "no-store"
    return response
