"""Public paths of the auth service (the gateway forwards /api/auth/... unchanged)."""

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("register", views.RegisterView.as_view(), name="register"),
    path("login", views.LoginView.as_view(), name="login"),
    path("refresh", views.RefreshView.as_view(), name="refresh"),
    path("logout", views.LogoutView.as_view(), name="logout"),
    path("logout-all", views.LogoutAllView.as_view(), name="logout-all"),
    path("me", views.MeView.as_view(), name="me"),
    path(".well-known/jwks.json", views.JWKSView.as_view(), name="jwks"),
]
