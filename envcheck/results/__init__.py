"""Results: the typed result (model), where results are kept (store) and what is made from them (publish, junit)."""
