"""The end-to-end scenarios that run inside a private network namespace."""
