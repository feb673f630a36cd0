"""The playlist service's Django project."""
