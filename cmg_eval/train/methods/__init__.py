"""Built-in pretraining methods; each module registers itself with @register_method."""
