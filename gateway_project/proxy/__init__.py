"""The gateway's proxy app: JWT check, user context, circuit breakers, pass-through."""
