"""Docker: the daemon connection (client), image builds (build), probe containers (run) and cleanup (clean)."""
