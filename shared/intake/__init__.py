"""Webhook providers: each module is one provider's signature scheme and normalisation (see shared/intake/base.py)."""
