"""Persistence: the backend protocol, safe keys, the file backend and the engine's state store."""
