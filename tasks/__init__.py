"""Thin Prefect tasks around ``crnn`` functions; each returns paths, ids or small dicts."""
