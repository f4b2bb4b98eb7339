"""Shapes every release, encoder and task shares: one definition each."""

STEPS = 10                      # one-second segments per clip
FEATURE_TAILS = {"video": (7, 7, 512), "audio": (128,), "text": (768,)}   # per-step feature shape
MAX_TEXT_TOKENS = 10            # tokens kept per caption
TOKEN_DIM = FEATURE_TAILS["text"][0]
