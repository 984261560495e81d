"""The package cache builds share: the run's side (cache: where it lives, the index pip would ask, starting, sharing
and ending the mirror) and the mirror process itself (mirror). Not Docker: it only needs the builds' network
address, which engine/network.py finds."""
