"""The gateway service's Django project."""
