"""Built-in encoder adapters; each module registers itself with @register_encoder."""
