"""Browser session URLs, named like DRF's own login/logout so its templates link to them."""

from django.urls import path

from browser import views

# DRF's templates reverse "rest_framework:login"/"rest_framework:logout"; the gateway never
# includes rest_framework.urls (it has no Django sessions), so these names are free.
app_name = "rest_framework"

urlpatterns = [
    path("login", views.login_view, name="login"),
    path("logout", views.logout_view, name="logout"),
]
