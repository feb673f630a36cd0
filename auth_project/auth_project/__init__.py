"""The auth service's Django project."""
