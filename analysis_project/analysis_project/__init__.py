"""The analysis service's Django project."""
