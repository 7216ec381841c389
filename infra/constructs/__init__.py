"""One construct per runtime folder; infra/stack.py wires them together."""
