"""Code shared by every service: user context, request ids, events, logging, errors, health."""
