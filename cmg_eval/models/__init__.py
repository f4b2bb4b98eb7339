"""Network modules with the public parameter names, shared by adapters and pretraining."""
