"""The Docker engine: the daemon connection (client), image builds (build), images people already run (images),
probe containers (run), the builds' network (network), the daemon's disk (disk), registries (registry) and cleanup
(clean)."""
