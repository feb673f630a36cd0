"""Users, tokens and the UserDeleted outbox of the auth service."""
